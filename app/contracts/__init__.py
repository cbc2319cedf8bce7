"""Family-doctor signing (家庭医生签约): service packages, agreement templates, contracts, signing channels."""
