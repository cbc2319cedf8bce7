"""Chinese validation messages for marshmallow, installed once at start-up.

marshmallow merges each field class's `default_error_messages` along the MRO when a field is
created, and validators read their message templates from class attributes, so setting them
here changes every schema in the project without touching a single field definition.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

_FIELD_MESSAGES: dict[type[fields.Field[Any]], dict[str, str]] = {
    fields.Field: {
        "required": "此项必填",
        "null": "不能为空",
        "validator_failed": "内容不符合要求",
    },
    fields.String: {"invalid": "须为文本", "invalid_utf8": "文本编码不正确"},
    fields.Integer: {"invalid": "须为整数", "too_large": "数值过大"},
    fields.Number: {"invalid": "须为数字", "too_large": "数值过大", "special": "数值不正确"},
    fields.Decimal: {"special": "数值不正确"},
    fields.Float: {"special": "数值不正确"},
    fields.Boolean: {"invalid": "须为是或否（true/false）"},
    fields.UUID: {"invalid_uuid": "编号格式不正确"},
    fields.Date: {"invalid": "日期格式不正确，应为 YYYY-MM-DD", "format": "日期格式不正确"},
    fields.DateTime: {
        "invalid": "时间格式不正确，应为 ISO 8601（如 2026-01-31T08:30:00+08:00）",
        "invalid_awareness": "时间须带时区",
        "format": "时间格式不正确",
    },
    fields.Time: {"invalid": "时间格式不正确，应为 HH:MM"},
    fields.Email: {"invalid": "邮箱格式不正确"},
    fields.URL: {"invalid": "网址格式不正确"},
    fields.List: {"invalid": "须为列表"},
    fields.Tuple: {"invalid": "须为列表"},
    fields.Dict: {"invalid": "须为对象"},
    fields.Nested: {"type": "须为对象"},
    fields.Enum: {"unknown": "须为以下之一：{choices}"},
}


def install() -> None:
    for field_class, messages in _FIELD_MESSAGES.items():
        merged = dict(getattr(field_class, "default_error_messages", {}))
        merged.update(messages)
        field_class.default_error_messages = merged
    Schema.error_messages = {
        "unknown": "不允许的字段",
        "type": "须为 JSON 对象",
    }
    # Range interpolates the operators first, then the bounds (hence the double braces).
    validate.Range.message_min = "须{min_op} {{min}}"
    validate.Range.message_max = "须{max_op} {{max}}"
    validate.Range.message_all = "须{min_op} {{min}} 且{max_op} {{max}}"
    validate.Range.message_gte = "大于或等于"
    validate.Range.message_gt = "大于"
    validate.Range.message_lte = "小于或等于"
    validate.Range.message_lt = "小于"
    validate.Length.message_min = "长度不能少于 {min}"
    validate.Length.message_max = "长度不能超过 {max}"
    validate.Length.message_all = "长度须在 {min} 到 {max} 之间"
    validate.Length.message_equal = "长度须为 {equal}"
    validate.OneOf.default_message = "须为以下之一：{choices}"
    validate.Regexp.default_message = "格式不正确"
    validate.Email.default_message = "邮箱格式不正确"
    validate.URL.default_message = "网址格式不正确"
