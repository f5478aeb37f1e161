"""The procedural rules of online mediation: join steps, conflicts, deadlines, the e-transcript."""
