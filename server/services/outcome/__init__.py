"""The outcome of a mediation: the settlement agreement, its signatures and seal, the court hand-off."""
