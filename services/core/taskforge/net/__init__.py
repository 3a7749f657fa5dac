"""Network egress of task handlers: which destinations they may reach, and the client that
enforces it (:mod:`taskforge.net.addresses`, :mod:`taskforge.net.egress`)."""
