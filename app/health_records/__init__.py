"""Public-health records to the national standard (《国家基本公共卫生服务规范（第三版）》)."""
