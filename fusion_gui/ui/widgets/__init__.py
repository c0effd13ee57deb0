"""Small widgets and app-wide behaviours shared by the panels (no job wiring here)."""
