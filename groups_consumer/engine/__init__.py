"""The group engine: rule trees, selections of users, exclusivity and membership writes."""
