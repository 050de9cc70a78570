"""lead-intake: where every lead and every outcome enters the funnel."""
