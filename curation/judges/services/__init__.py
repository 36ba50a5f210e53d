"""Writes of the judges app, split by job: annotators (create, edit), kinds (the registry of
judge kinds and the judges themselves), runs (judging runs), writing (verdicts and the
Judgements they make).

The API the routing app (and anyone else) builds on:

- `runs.ai_judgements_run(*, annotator, comparison_ids=None, on_progress=None) -> AIJudgingRun`
  judges the comparisons (None: all of the annotator's project) in this process and
  returns the finished run (counts in ok_count / failed_count / skipped_count).
  `runs.ai_judging_run_start(...)` does the same through the Celery task
  (`curation.judges.tasks.ai_judging_run_execute_task`), with progress on the run row.
- `curation.judges.selectors.ai_verdicts_for(*, project, annotator=None)`: the current ok
  verdicts, one per (annotator, comparison), with p_a, confidence, orders_agree, choice.
- `curation.judges.verdicts.reward_model_verdicts(p_a, spread) -> (choice_a, confidence)`:
  the reward-model judge as a pure numpy function, usable without a database.

Rules: every run is idempotent per (annotator, comparison, model version): a comparison
with an ok verdict of that version is skipped, so no second verdict or judgement is made;
a failed one is tried again. An ok verdict writes one annotation Judgement (source_kind
"ai", user None, source_name "ai:<name>", the model version, choice, confidence,
rationale, idempotency key sha256("ai:<annotator id>:<comparison id>:<version>")); a new
model version of the same annotator updates that judgement in place (the annotation app
allows one judgement per source and comparison), keeping the older verdicts as history.
Failed verdicts never make judgements. Labels are refreshed for the touched comparisons.
"""
