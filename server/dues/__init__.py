"""Party dues (党费): monthly standard and payment per member, imported from a 收缴表 or a bank statement."""
