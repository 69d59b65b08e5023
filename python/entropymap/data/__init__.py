"""Package data: the bundled sample case (see ``lits_117/NOTICE.md``)."""
