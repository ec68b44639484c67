"""Feature front ends: audio loading and log-mel, wav2vec 2.0 features, text tokenisation, face
analysis (FaceMesh landmarks, pose, gaze)."""
