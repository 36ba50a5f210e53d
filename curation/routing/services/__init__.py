"""Routing writes: route a project's unlabelled comparisons to humans or AI within its budget,
order the human queue, apply AI labels, and the runs that do it (page, command, new model).

What counts against the human budget (in comparisons; the smaller of `human_budget` and
`human_budget_fraction` x the project's non-gold comparisons): every comparison that has a
human judgement or a live human lease (those are never re-routed), plus every comparison
routing sends to humans. Gold items are outside the arithmetic. Already-labelled
comparisons keep their labels and their route; only unlabelled, pending, non-gold,
non-excluded comparisons without human work on them are (re-)routed.

Concurrency: `pairs_route` takes the project row FOR UPDATE, then locks the comparisons it
routes, so two routings of one project run one after the other and the second sees what
the first committed; the queue takes comparisons with SKIP LOCKED, so a lease cannot slip
in between the count and the write. The budget therefore holds under concurrent re-routing.

AI labels: the routing run starts an AI judging run of the project's AI annotator (the
first active one by id unless one is given) over the AI-routed comparisons without a label,
in the same transaction as the routes (a judging run of its own, with its own progress,
time budget and lifecycle: curation.judges.services.runs). Without an active annotator they
stay routed to AI and unlabelled, and the run says so.

Modules: project_settings (policy and budget), budget (what counts against it), routing
(one routing pass), runs (the runs that do it).
"""
