"""健康体检表 (spec §2, 3rd edition): the annual health examination of the elderly, hypertension,
type-2 diabetes and severe-mental-disorder patients (ordinary residents may use it too).

Modules: `fields` (every field of §2.1–2.12 and the form's rules), `derive` (BMI, 空腹血糖 in both
units, age at the exam, the elderly self-care level from the 老年人生活自理能力评估表, rules that
need the database), `printer` (the national layout). `service_type="health_exam"`; the list
result is the 健康评价 code (1 体检无异常 / 2 有异常).

Decisions (what the spec leaves open, and project rules):

- **Required items**: 体检日期, 症状 and 健康评价 always. For residents aged 65+ on the exam date
  the four elderly self-assessments are required: 健康状态, 认知功能 and 情感状态 are typed; the
  生活自理能力 level is *derived* (never typed: a typed `elderly_selfcare_level` is an unknown
  field) from the assessment named by `selfcare_form_id` (an active 老年人生活自理能力评估表 of the
  same resident, dated within 365 days up to the exam date) or else the latest such assessment; a
  65+ resident without one is refused ("65岁及以上老年人须先完成生活自理能力评估"). Below 65 the
  items are optional and an existing assessment is still used.
- **BMI** is computed (体重 / 身高², one decimal) and never typed (`bmi` is an unknown field). A
  computed BMI outside 10–80 is refused as a typing error (project rule).
- **MMSE** (`mmse_total`, 0–30) is required when 认知功能 is 2 粗筛阳性 and refused otherwise;
  **GDS** (`gds_total`) likewise with 情感状态. The form says only "老年人抑郁评分检查，总分"; the
  range 0–30 is the 30-item GDS and also holds the 15-item GDS (0–15). Which scale was used is not
  recorded (the form has no box for it).
- **Blood pressure**: per side both SBP and DBP or neither, SBP > DBP.
- **Lifestyle**: 每次锻炼时间/坚持锻炼时间/锻炼方式 only when 锻炼频率 is 1–3; 日吸烟量 and 开始吸烟
  年龄 only when 已戒烟 or 吸烟, 戒烟年龄 required when (and only when) 已戒烟; every drinking item
  only when 饮酒频率 is not 1 从不, 戒酒年龄 required when (and only when) 已戒酒; ages in order:
  开始 ≤ 戒 ≤ age at the exam. 职业病危害因素接触史 2 有 requires 工种, 从业时间 and at least one
  毒物种类; each row's 毒物种类 and 防护措施 go together (防护措施 2 有 needs its text); nothing of it
  when 1 无.
- **齿列**: 1 正常 is exclusive; 缺齿/龋齿/义齿 need at least one quadrant of their tooth chart
  (free text per quadrant, e.g. "7 8"), and a chart is refused for an unselected option.
- **妇科** (five items) and **宫颈涂片** are refused for a male resident; 乳腺 applies to both sexes.
  **足背动脉搏动** is required for residents in the 2型糖尿病 population group (填表说明 §6).
- **尿常规** 尿蛋白/尿糖/尿酮体/尿潜血: a qualitative code of `urine_qualitative` (－ ± ＋ … ＋＋＋＋,
  full-width or ASCII, stored as "-", "+" …) or a number with one of `fields.URINE_UNITS`
  (stored "0.15 g/L").
- **空腹血糖**: `fpg_mmol` **or** `fpg_mgdl` (both refused); the other is derived (× / ÷ 18).
- **Abnormal results need a description**: 心电图, 胸片, B超 (腹部, 其他), 宫颈涂片, 眼底, 呼吸音 by
  their 异常 companions; 大便潜血 阳性 by `fecal_occult_blood_desc` (a rule: the shared 阴性/阳性
  list has no companion). 肝功能 and 肾功能 are printed as values without an 异常 box, so there is
  nothing to attach a description to; their abnormal findings go to 健康评价 异常1–4.
  B超其他 needs its site (`ultrasound_other_site`).
- **健康评价** 2 有异常 needs at least 异常1 (up to 异常4); **危险因素控制** 5 needs
  `weight_target_kg`, 6 `vaccine_advice`, 7 `risk_control_other` (codes.py: only 7 is an "other").
- Plausible ranges (project rules; the standard defines none): 体温 34.0–42.0 ℃ (spec's
  suggestion); 视力 3.0–5.3 (spec's suggestion); 脉率 and 心率 20–250 次/分钟; 呼吸频率 5–60;
  收缩压 60–300 and 舒张压 30–200 mmHg; 身高 50–250 cm; 体重 10–300 kg; 腰围 40–200 cm;
  每次锻炼 1–600 分钟; 坚持锻炼 0–100 年; 日吸烟量 1–200 支; ages 1–120 岁; 日饮酒量 0.1–50 两;
  从业时间 0–80 年; MMSE 0–30; GDS 0–30; 血红蛋白 20–250 g/L; 白细胞 0.1–200 ×10⁹/L; 血小板
  1–2000 ×10⁹/L (these catch values typed in the 2nd edition's or other units); 空腹血糖 1.0–50
  mmol/L or 18–900 mg/dL; 尿微量白蛋白 0–1000 mg/dL; 糖化血红蛋白 3.0–20.0 %; ALT/AST 0–5000 U/L;
  白蛋白 5–80 g/L; 总/结合胆红素 0–1000 μmol/L (结合 ≤ 总); 血清肌酐 5–3000 μmol/L; 血尿素
  0.5–100 mmol/L; 血钾 1.0–10.0 and 血钠 100–200 mmol/L; 总胆固醇 0.5–30, 甘油三酯 0.1–60, LDL-C
  0.1–20, HDL-C 0.1–10 mmol/L (LDL-C and HDL-C ≤ 总胆固醇); 减体重目标 0.1–100 kg.
- Rows: 住院史/家庭病床史 2 rows (年月; 入院/建床, 原因, 医疗机构名称 required; 出/撤 ≥ 入/建),
  主要用药情况 6 rows (药物名称 required), 非免疫规划预防接种史 3 rows (名称 required).
"""

from __future__ import annotations

from app.health_records.codes import CODES
from app.health_records.forms import FormDefinition, register
from app.health_records.forms.exam.derive import derive
from app.health_records.forms.exam.printer import render
from app.health_records.forms.exam.rules import SPEC
from app.health_records.models import Category

__all__ = ["DEFINITION", "SPEC"]

DEFINITION = register(
    FormDefinition(
        type="health_exam",
        title=SPEC.title,
        category=Category.GENERAL,
        spec=SPEC,
        date_field="exam_date",
        service_type="health_exam",
        derive=derive,
        result_code=lambda payload, derived: payload.get("health_eval"),
        result_label=lambda code: CODES["health_eval"].label(code),
        render_pdf=render,
    )
)
