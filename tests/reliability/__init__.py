"""The reliability probe (load + kill -9 faults against a real deployment); see :mod:`.suite`."""
