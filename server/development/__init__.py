"""Member development (发展党员): the stages from 入党申请人 to 正式党员, with their dates."""
