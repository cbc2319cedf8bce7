"""严重精神障碍患者管理 (spec §6): 个人信息补充表, 随访服务记录表, and the case's follow-up schedule.

Both forms belong to the patient's open `smd` case (DATA-05: only holders of `health:smd` in the
responsible centre see them).

- `smd_supplement` 严重精神障碍患者个人信息补充表 (§6.1): filled once per case (`once_per="case"`)
  when the patient is taken into management. 经济状况 accepts only 1 and 2 (spec open point 4: the
  2nd edition's 3 不详 is refused). Each selected 危险行为 needs its count (> 0); an unselected one
  must have none; 7 无 is exclusive.
- `smd_follow_up` 严重精神障碍患者随访服务记录表 (§6.2). A visit has one of three outcomes:
  * an ordinary visit: the whole assessment is required (危险性评估 … 本次随访分类, doctor's
    signature); 目前症状 and 康复措施 have no "none" option on the printed form, so an empty
    selection means none;
  * 失访 (`lost_reason` given) or death (`death_date` + `death_cause`): nobody was assessed, so the
    visit carries no assessment at all: only 随访日期, 随访形式 and the 失访原因 or the death block
    are required, and every assessment field must be left empty (a death visit also takes no
    下次随访日期). A visit cannot be both 失访 and death. 死亡原因 1 躯体疾病 requires the
    sub-code (①–⑧); 6 其他 requires `death_other`; sub-code ⑦ 其他疾病 requires
    `death_somatic_other` (the spec names one text for both; two fields keep both texts).
  危险性评估 is stored 0–5 literally. A visit dated before the case was opened is refused.

本次随访分类 check (§6.3, a warning, never a refusal): `derived.suggested_class` is
  1 不稳定 when 危险性评估 is 3–5 or 自知力缺失 (the standard's "缺乏自知力" is an 不稳定 criterion);
  2 基本稳定 when 危险性评估 is 1–2, or any 目前症状 is selected, or 自知力不全, or any 社会功能 is 较差;
  3 稳定 otherwise.
  药物不良反应 2 有 is NOT counted as a "severe adverse reaction": the form records only 无/有 and a
  description, not the severity, so it does not move the suggestion (a doctor who judges it severe
  chooses 不稳定 and sees the warning, which is what a warning is for). When the chosen class
  differs, `derived.class_mismatch` is true and `derived.warnings` says why, in Chinese.

Schedule (`CASE_SCHEDULERS["smd"]` and the forms' `after_save`, recomputed from the case's active
forms each time, so a revised visit moves the due date too):
  - case opened → due `opened_on`, kind `smd_supplement` (the 补充表 is filled at intake), and it
    stays so until the case has a 补充表 (follow-ups saved before it do not hide that it is missing);
  - 补充表 saved, no follow-up yet → first follow-up due max(opened_on, filled_date) + the
    不稳定 interval (14 days by default): a patient not yet classified is followed as closely as
    the least stable class;
  - after each follow-up → its `next_visit_date` when given, else visit_date + the interval of its
    本次随访分类 from the setting `SMD_FOLLOWUP_DAYS` ("1:14,2:14,3:90"); after a 失访 visit the next
    attempt is due after the 不稳定 interval (a patient who could not be reached is not known to be
    stable). Never more than 90 days after the visit (at least 4 visits a year): a later
    `next_visit_date` is kept on the form, with a warning, but the due date is capped. The setting
    is read on each save; each of the classes 1, 2, 3 needs a whole number of days in 1–90, else
    the default is used and a warning logged;
  - a death visit clears the due date (`facts.deceased_on`); closing the case stays a deliberate
    action (POST /health-cases/{id}/close), not a side effect of a visit;
  - voiding a form calls no hook (`services.forms.void_form`), so the due date is recomputed at the
    case's next saved form, not at the void.
  Spec open point 3: the 服务规范's 基本稳定 rule is "2 weeks, then 3 months if stable, 1 month if
  not" (recalled, not in the excerpts). It is modelled by the visit classes themselves: a 基本稳定
  visit schedules 14 days; the next visit re-classifies (稳定 → 90 days, still 基本稳定 → 14 days);
  the "1 month" after an unsuccessful adjustment is the doctor's `next_visit_date`. The 2018
  《严重精神障碍管理治疗工作规范》 quotes other intervals (不稳定 weekly, 基本稳定 every 2 months, 稳定
  every 3 months); a district auditing against it sets `SMD_FOLLOWUP_DAYS` ("1:7,2:60,3:90").
"""

from __future__ import annotations

# Importing the modules registers the two forms and the case scheduler.
from app.health_records.forms.smd import follow_up, schedule, supplement

__all__ = ["follow_up", "schedule", "supplement"]
