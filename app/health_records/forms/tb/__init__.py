"""肺结核患者健康管理 (spec §4): 第一次入户随访记录表, 随访服务记录表, and the case's schedule.

- `first_visit.py`: `tb_first_visit` 肺结核患者第一次入户随访记录表 (§4.1), once per case. Derived
  `within_72h`: the visit is dated no later than the local date on which the 72 h after
  `case.notified_at` end (the form records a date, not a time, so a visit on that last day counts
  as on time). A late visit is saved and flagged (`within_72h: false`, a Chinese `warnings` line,
  result "超过72小时"); a visit dated before the notice date is refused.
- `follow_up.py`: `tb_follow_up` 肺结核患者随访服务记录表 (§4.2), one form per visit. The paper form
  has one column per visit; here each visit is its own form and prints on its own page. Its
  停止治疗及原因 + 全程管理情况 block is the 结案评估: when filled, derived `closing_assessment` is
  true (the form then also fulfils the `tb_closing_assessment` package item) and `adherence_rate` =
  实际服药次数 / 应服药次数 × 100, one decimal, half up. A 死亡 or 丢失 stop needs no visit
  findings: with stop reason 2 or 3 only the visit date, 治疗月序, the stop block and the doctor
  are required.
- `schedule.py`: `CASE_SCHEDULERS["tb"]` and the visits' `after_save` (§4.3):
  - opening a case: due = local date of (notified_at + 72 h), kind `tb_first_visit`;
  - after a visit (only the latest-dated visit of the case moves the schedule): due = the form's
    `next_visit_date`, or the computed suggestion (`next_visit_date_suggested` in derived):
    督导人员 1 医生 → visit + 1 month; 2 家属, 3 自服药, 4 其他 → visit + 10 days in the intensive
    phase, visit + 1 month in the continuation phase;
  - intensive phase = from `case.treatment_started_on` (else the first visit's date, else the
    notice date) for N months. N is read from the regimen: the leading number of its phase
    ("2HRZE/4HR" → 2, "3HRZE/6HRE" → 3); with more than two phases every phase but the last is
    intensive ("2HRZES/1HRZE/5HRE" → 3, the 复治 regimen); unreadable → 2
    (`intensive_months_assumed`). The first visit stores N in `case.intensive_months`; a follow-up
    uses it (or its own regimen when the case has none). `case.facts` keeps codes and dates only:
    supervisor, phase, intensive_until, first_visit_within_72h, stop_reason;
  - a follow-up with the stop block: due None, kind `tb_closing`. The case is NOT closed: 结案 is a
    person's act (`POST /api/v1/health-cases/{id}/close`).

Unconfirmed points (spec "open points"):
1. 症状及体征 其他 has no code in the printed forms: it is the free text `symptoms_other`; no code
   10/11 is invented.
2. "Monthly in the continuation (继续期/非注射期) phase" for family-supervised patients is recalled
   from the standard (the source excerpt is cut off). Note also that the issue text says "every
   10 days in the intensive phase for patients supervised by medical staff", whereas the spec
   (§4.3, S16) puts the 10-day rhythm on family supervision and monthly on medical staff; the spec
   is what is implemented.
"""

from __future__ import annotations

# Importing the modules registers the two forms and the case scheduler.
import app.health_records.forms.tb.first_visit
import app.health_records.forms.tb.follow_up
import app.health_records.forms.tb.schedule  # noqa: F401
