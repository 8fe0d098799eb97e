"""``python -m tallrec_pl serve``'s parts: ``api`` (requests -> prompts -> token ids, in LitServe's API
process), ``server`` (the model worker and LitServe's server), ``page.html`` (the page at GET /),
and ``litserve_internals`` (the fenced reaches into LitServe). The command itself is
``tallrec_pl.commands.serve``."""
