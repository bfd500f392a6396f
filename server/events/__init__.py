"""Events (会议/活动) and their check-in windows."""
