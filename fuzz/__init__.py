"""Coverage-guided fuzzing of the decoder (atheris); see docs/HARDENING.md."""
