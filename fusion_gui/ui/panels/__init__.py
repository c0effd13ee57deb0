"""The Merge and Compare tabs' panels: thin binders between widgets and shared state."""
