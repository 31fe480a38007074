"""Everything that runs inside one task or trial: data, teachers, circuits, backends,
the student, the loss and the trial itself. Knows nothing of Ray."""
