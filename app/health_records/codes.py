"""The code dictionary of the national public-health forms (《国家基本公共卫生服务规范（第三版）》).

One module holds every code list of every form, exactly as printed: codes are strings ("0",
"01", "99" are real values), labels are the printed Chinese words. Forms refer to a list by name
(`CODES["drug_allergy"]`); nothing else in the code base spells a label. Where the source
(`shared/spec/public-health-forms.md`) marks a point unconfirmed, the comment says which
recommendation was followed; the README lists them.

This file is data, not logic; it is allowed to be longer than the house's ~400 lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CodeList:
    """One printed code list. `none` is the exclusive "none" option of a multi-code field
    (无 / 未发现 / 无症状 …); `other` are the options that need a free-text companion."""

    name: str
    options: tuple[tuple[str, str], ...]
    none: str | None = None
    other: frozenset[str] = field(default_factory=frozenset)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.options)

    def label(self, code: str) -> str:
        for value, text in self.options:
            if value == code:
                return text
        raise KeyError(code)

    def labels(self, codes: Iterable[str]) -> list[str]:
        return [self.label(code) for code in codes]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "options": [{"code": code, "label": label} for code, label in self.options],
            "none": self.none,
            "other": sorted(self.other, key=lambda c: (len(c), c)),
        }


def _list(
    name: str,
    spec: str,
    *,
    none: str | None = None,
    other: Iterable[str] = (),
) -> CodeList:
    """`spec` is "code label|code label|…" as printed."""
    options = []
    for part in spec.split("|"):
        code, _, label = part.strip().partition(" ")
        options.append((code, label.strip()))
    return CodeList(name, tuple(options), none=none, other=frozenset(other))


_LISTS: list[CodeList] = [
    # --- shared small lists -------------------------------------------------------------------
    _list("none_have", "1 无|2 有", other=("2",)),  # 无/有 with a description when 有
    _list("normal_abnormal", "1 正常|2 异常", other=("2",)),
    _list("not_seen_abnormal", "1 未见异常|2 异常", other=("2",)),
    _list("negative_positive", "1 阴性|2 阳性"),
    _list("no_yes", "1 否|2 是"),
    _list("yes_no", "1 是|2 否"),
    _list("good_fair_poor", "1 良好|2 一般|3 较差"),
    # --- 1. 个人基本信息表 ----------------------------------------------------------------------
    _list("gender", "1 男|2 女|9 未说明的性别|0 未知的性别"),
    _list("residence_type", "1 户籍|2 非户籍"),
    _list("ethnicity", "01 汉族|99 少数民族", other=("99",)),
    _list("blood_type_abo", "1 A型|2 B型|3 O型|4 AB型|5 不详"),
    _list("blood_type_rh", "1 阴性|2 阳性|3 不详"),
    _list(
        "education",
        "1 研究生|2 大学本科|3 大学专科和专科学校|4 中等专业学校|5 技工学校|6 高中|7 初中|8 小学"
        "|9 文盲或半文盲|10 不详",
    ),
    _list(
        "occupation",
        "0 国家机关、党群组织、企业、事业单位负责人|1 专业技术人员|2 办事人员和有关人员|3 商业、服务业人员"
        "|4 农、林、牧、渔、水利业生产人员|5 生产、运输设备操作人员及有关人员|6 军人|7 不便分类的其他从业人员"
        "|8 无职业",
    ),
    _list("marital_status", "1 未婚|2 已婚|3 丧偶|4 离婚|5 未说明的婚姻状况"),
    _list(
        "payment_method",
        "1 城镇职工基本医疗保险|2 城镇居民基本医疗保险|3 新型农村合作医疗|4 贫困救助|5 商业医疗保险"
        "|6 全公费|7 全自费|8 其他",
        other=("8",),
    ),
    _list("drug_allergy", "1 无|2 青霉素|3 磺胺|4 链霉素|5 其他", none="1", other=("5",)),
    _list("exposure", "1 无|2 化学品|3 毒物|4 射线", none="1"),
    _list(
        "past_disease",
        "1 无|2 高血压|3 糖尿病|4 冠心病|5 慢性阻塞性肺疾病|6 恶性肿瘤|7 脑卒中|8 严重精神障碍|9 结核病"
        "|10 肝炎|11 其他法定传染病|12 职业病|13 其他",
        none="1",
        other=("6", "12", "13"),
    ),
    _list(
        "family_disease",
        "1 无|2 高血压|3 糖尿病|4 冠心病|5 慢性阻塞性肺疾病|6 恶性肿瘤|7 脑卒中|8 严重精神障碍|9 结核病"
        "|10 肝炎|11 先天畸形|12 其他",
        none="1",
        other=("12",),
    ),
    # Code 4 is printed 言语残疾 (S5 and GB/T 26341); other sources write 语言残疾 (same code).
    _list(
        "disability",
        "1 无残疾|2 视力残疾|3 听力残疾|4 言语残疾|5 肢体残疾|6 智力残疾|7 精神残疾|8 其他残疾",
        none="1",
        other=("8",),
    ),
    _list("kitchen_exhaust", "1 无|2 油烟机|3 换气扇|4 烟囱"),
    _list("fuel_type", "1 液化气|2 煤|3 天然气|4 沼气|5 柴火|6 其他"),
    _list("drinking_water", "1 自来水|2 经净化过滤的水|3 井水|4 河湖水|5 塘水|6 其他"),
    _list("toilet", "1 卫生厕所|2 一格或二格粪池式|3 马桶|4 露天粪坑|5 简易棚厕"),
    _list("livestock_pen", "1 无|2 单设|3 室内|4 室外"),
    # 既往史 手术/外伤/输血 and similar 无/有 flags whose details are rows, not a free-text companion.
    _list("history_flag", "1 无|2 有"),
    # --- 2. 健康体检表 ---------------------------------------------------------------------------
    _list(
        "exam_symptom",
        "1 无症状|2 头痛|3 头晕|4 心悸|5 胸闷|6 胸痛|7 慢性咳嗽|8 咳痰|9 呼吸困难|10 多饮|11 多尿"
        "|12 体重下降|13 乏力|14 关节肿痛|15 视力模糊|16 手脚麻木|17 尿急|18 尿痛|19 便秘|20 腹泻"
        "|21 恶心呕吐|22 眼花|23 耳鸣|24 乳房胀痛|25 其他",
        none="1",
        other=("25",),
    ),
    _list("elderly_health_self_rating", "1 满意|2 基本满意|3 说不清楚|4 不太满意|5 不满意"),
    _list(
        "elderly_selfcare_level",
        "1 可自理（0～3分）|2 轻度依赖（4～8分）|3 中度依赖（9～18分）|4 不能自理（≥19分）",
    ),
    _list("screen_result", "1 粗筛阴性|2 粗筛阳性"),
    _list("exercise_frequency", "1 每天|2 每周一次以上|3 偶尔|4 不锻炼"),
    _list("diet_habit", "1 荤素均衡|2 荤食为主|3 素食为主|4 嗜盐|5 嗜油|6 嗜糖"),
    _list("smoking_status", "1 从不吸烟|2 已戒烟|3 吸烟"),
    _list("drinking_frequency", "1 从不|2 偶尔|3 经常|4 每天"),
    _list("alcohol_quit", "1 未戒酒|2 已戒酒"),
    _list("alcohol_type", "1 白酒|2 啤酒|3 红酒|4 黄酒|5 其他", other=("5",)),
    _list("occ_hazard_flag", "1 无|2 有"),  # 有 → 工种, 从业时间 and the five hazard rows
    _list("protection", "1 无|2 有", other=("2",)),
    _list("lips", "1 红润|2 苍白|3 发绀|4 皲裂|5 疱疹"),
    _list("dentition", "1 正常|2 缺齿|3 龋齿|4 义齿(假牙)", none="1"),
    _list("pharynx", "1 无充血|2 充血|3 淋巴滤泡增生"),
    _list("hearing", "1 听见|2 听不清或无法听见"),
    _list("motor_function", "1 可顺利完成|2 无法独立完成任何一个动作"),
    _list("skin", "1 正常|2 潮红|3 苍白|4 发绀|5 黄染|6 色素沉着|7 其他", other=("7",)),
    _list("sclera", "1 正常|2 黄染|3 充血|4 其他", other=("4",)),
    _list("lymph_nodes", "1 未触及|2 锁骨上|3 腋窝|4 其他", other=("4",)),
    _list("rales", "1 无|2 干罗音|3 湿罗音|4 其他", other=("4",)),
    _list("heart_rhythm", "1 齐|2 不齐|3 绝对不齐"),
    _list("leg_edema", "1 无|2 单侧|3 双侧不对称|4 双侧对称"),
    _list("dorsalis_pedis", "1 未触及|2 触及双侧对称|3 触及左侧弱或消失|4 触及右侧弱或消失"),
    _list("dre", "1 未及异常|2 触痛|3 包块|4 前列腺异常|5 其他", other=("5",)),
    _list("breast", "1 未见异常|2 乳房切除|3 异常泌乳|4 乳腺包块|5 其他", none="1", other=("5",)),
    # Urine qualitative results: the form prints －/＋…＋＋＋＋; ± appears in implementations.
    _list("urine_qualitative", "- －|± ±|+ ＋|++ ＋＋|+++ ＋＋＋|++++ ＋＋＋＋"),
    _list(
        "cerebrovascular",
        "1 未发现|2 缺血性卒中|3 脑出血|4 蛛网膜下腔出血|5 短暂性脑缺血发作|6 其他",
        none="1",
        other=("6",),
    ),
    _list("renal", "1 未发现|2 糖尿病肾病|3 肾功能衰竭|4 急性肾炎|5 慢性肾炎|6 其他", none="1", other=("6",)),
    _list(
        "cardiac",
        "1 未发现|2 心肌梗死|3 心绞痛|4 冠状动脉血运重建|5 充血性心力衰竭|6 心前区疼痛|7 其他",
        none="1",
        other=("7",),
    ),
    _list("vascular", "1 未发现|2 夹层动脉瘤|3 动脉闭塞性疾病|4 其他", none="1", other=("4",)),
    _list("eye", "1 未发现|2 视网膜出血或渗出|3 视乳头水肿|4 白内障|5 其他", none="1", other=("5",)),
    _list("not_found_have", "1 未发现|2 有", none="1", other=("2",)),
    _list("exam_adherence", "1 规律|2 间断|3 不服药"),
    # 有异常 is described in 异常1–4 (abnormal_1 … abnormal_4), not one companion (exam.py rule).
    _list("health_eval", "1 体检无异常|2 有异常"),
    # 3rd edition (the 2nd edition's 1 定期随访 is gone; do not use the 2nd-edition codes).
    _list("guidance", "1 纳入慢性病患者健康管理|2 建议复查|3 建议转诊"),
    _list(
        "risk_control",
        "1 戒烟|2 健康饮酒|3 饮食|4 锻炼|5 减体重|6 建议接种疫苗|7 其他",
        # 5 and 6 have their own companions (weight_target_kg, vaccine_advice: exam.py rules).
        other=("7",),
    ),
    # --- 3. 居民健康档案信息卡 (the card prints no numbers; storage codes are the spec's suggestion)
    _list(
        "card_chronic_disease",
        "1 无|2 高血压|3 糖尿病|4 脑卒中|5 冠心病|6 哮喘|7 职业病|8 其他疾病",
        none="1",
        other=("8",),
    ),
    # --- 4. 肺结核 ------------------------------------------------------------------------------
    _list("tb_first_visit_mode", "1 门诊|2 家庭"),
    _list("tb_visit_mode", "1 门诊|2 家庭|3 电话"),
    _list("tb_patient_type", "1 初治|2 复治"),
    _list("tb_sputum", "1 阳性|2 阴性|3 未查痰"),
    _list("tb_drug_resistance", "1 耐药|2 非耐药|3 未检测"),
    # 其他 is a free-text line, not a code (spec open point 1: no code invented).
    _list(
        "tb_first_symptom",
        "0 没有症状|1 咳嗽咳痰|2 低热盗汗|3 咯血或血痰|4 胸痛消瘦|5 恶心纳差|6 头痛失眠|7 视物模糊"
        "|8 皮肤瘙痒、皮疹|9 耳鸣、听力下降",
        none="0",
    ),
    _list(
        "tb_followup_symptom",
        "0 没有症状|1 咳嗽咳痰|2 低热盗汗|3 咯血或血痰|4 胸痛消瘦|5 恶心纳差|6 关节疼痛|7 头痛失眠"
        "|8 视物模糊|9 皮肤瘙痒、皮疹|10 耳鸣、听力下降",
        none="0",
    ),
    _list("tb_regimen_usage", "1 每日|2 间歇"),
    _list("tb_drug_form", "1 固定剂量复合制剂|2 散装药|3 板式组合药|4 注射剂"),
    _list("tb_supervisor", "1 医生|2 家属|3 自服药|4 其他", other=("4",)),
    _list("tb_separate_room", "1 有|2 无"),
    _list("tb_ventilation", "1 良好|2 一般|3 差"),
    _list("tb_mastery", "1 掌握|2 未掌握"),
    _list("tb_stop_reason", "1 完成疗程|2 死亡|3 丢失|4 转入耐多药治疗"),
    # --- 5. 老年人生活自理能力评估表: levels (the score of each item and level is in selfcare.py)
    _list("selfcare_grade", "1 可自理|2 轻度依赖|3 中度依赖|4 不能自理"),
    # --- 6. 严重精神障碍 ------------------------------------------------------------------------
    _list("smd_household_type", "1 城镇|2 农村"),
    _list(
        "smd_employment",
        "1 在岗工人|2 在岗管理者|3 农民|4 下岗或无业|5 在校学生|6 退休|7 专业技术人员|8 其他|9 不详",
        other=("8",),
    ),
    _list("smd_consent", "0 不同意参加管理|1 同意参加管理"),
    _list(
        "smd_symptom",
        "1 幻觉|2 交流困难|3 猜疑|4 喜怒无常|5 行为怪异|6 兴奋话多|7 伤人毁物|8 悲观厌世|9 无故外走"
        "|10 自语自笑|11 孤僻懒散|12 其他",
        other=("12",),
    ),
    _list("smd_lockup", "1 无关锁|2 关锁|3 关锁已解除"),
    _list("smd_past_outpatient", "1 未治|2 间断门诊治疗|3 连续门诊治疗"),
    _list("smd_last_effect", "1 临床痊愈|2 好转|3 无变化|4 加重"),
    _list(
        "smd_risk_behaviour",
        "1 轻度滋事|2 肇事|3 肇祸|4 其他危害行为|5 自伤|6 自杀未遂|7 无",
        none="7",
    ),
    # Only 1 and 2 in the 3rd edition (spec open point 4; the 2nd edition's 3 不详 is not accepted).
    _list("smd_economic_status", "1 贫困，在当地贫困线标准以下|2 非贫困"),
    _list("smd_visit_mode", "1 门诊|2 家庭访视|3 电话"),
    _list("smd_lost_reason", "1 外出打工|2 迁居他处|3 走失|4 连续3次未到访|5 其他", other=("5",)),
    _list(
        "smd_death_cause",
        "1 躯体疾病|2 自杀|3 他杀|4 意外|5 精神疾病相关并发症|6 其他",
        other=("6",),
    ),
    _list(
        "smd_death_somatic",
        "1 传染病和寄生虫病|2 肿瘤|3 心脏病|4 脑血管病|5 呼吸系统疾病|6 消化系统疾病|7 其他疾病|8 不详",
        other=("7",),
    ),
    _list("smd_risk_level", "0 0级|1 1级|2 2级|3 3级|4 4级|5 5级"),
    _list("smd_insight", "1 自知力完全|2 自知力不全|3 自知力缺失"),
    _list("smd_work_function", "1 良好|2 一般|3 较差|9 此项不适用"),
    _list("smd_hospitalization", "0 未住院|1 目前正在住院|2 曾住院，现未住院"),
    _list("smd_adherence", "1 按医嘱规律用药|2 间断用药|3 不用药|4 医嘱勿需用药"),
    _list("smd_adverse_reaction", "1 无|2 有|9 此项不适用", other=("2",)),
    _list("smd_treatment_effect", "1 痊愈|2 好转|3 无变化|4 加重|9 此项不适用"),
    _list("smd_per_unit", "日 每日|月 每月"),
    _list("smd_rehab", "1 生活劳动能力|2 职业训练|3 学习能力|4 社会交往|5 其他", other=("5",)),
    _list("smd_visit_class", "1 不稳定|2 基本稳定|3 稳定"),
]

CODES: Mapping[str, CodeList] = {code_list.name: code_list for code_list in _LISTS}
assert len(CODES) == len(_LISTS), "duplicate code-list name"

# The 危险性评估 level definitions (§6.3), printed on the follow-up form's reverse.
SMD_RISK_LEVEL_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("0", "无符合以下 1～5 级中的任何行为"),
    ("1", "口头威胁，喊叫，但没有打砸行为"),
    ("2", "打砸行为，局限在家里，针对财物，能被劝说制止"),
    ("3", "明显打砸行为，不分场合，针对财物，不能接受劝说而停止"),
    ("4", "持续的打砸行为，不分场合，针对财物或人，不能接受劝说而停止（包括自伤、自杀）"),
    ("5", "持械针对人的任何暴力行为，或者纵火、爆炸等行为，无论在家里还是公共场合"),
)


def code_dictionary() -> list[dict[str, object]]:
    """Every code list, for the tablet's pickers (`GET /api/v1/health-records/codes`)."""
    return [code_list.as_dict() for code_list in _LISTS]
