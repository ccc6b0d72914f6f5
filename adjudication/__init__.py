"""Review queues, their stores, agreement metrics and the review web app. Never imports critic."""
