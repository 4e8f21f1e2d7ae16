"""`voxgate eval`: conversation quality of real models through a real session."""
