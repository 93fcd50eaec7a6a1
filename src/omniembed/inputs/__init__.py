"""Raw inputs to validated values: one loader per modality, used by every face."""
