"""The setting's name as the menu, the dialog and the pre-flight all write it (Qt-free)."""

ALLOW_DOWNLOADS = "Allow downloads from the Hugging Face Hub"
