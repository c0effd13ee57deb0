"""The app's side of the Hugging Face Hub: the "From the Hub…" dialog (search, remote pre-flight, download)
and "Publish to the Hub…" (upload a result with its model card). Every network call runs on a job thread
through `ui/jobs.py`; the engine's `fusion_gui.engine.hub` does the work with huggingface_hub."""
