"""The Conductor (arXiv 2512.04388): a policy LM writes a workflow (workers, subtasks, access lists),
the executor runs it against the pool, GRPO trains the policy on the graded answers.

  workflow.py    parse_workflow(text, pool_names, max_steps) -> Workflow | WorkflowError
  executor.py    await execute(workflow, question, call, ...) -> routers.serving_router.Episode
  prompts.py     build_prompt(...): pool description, few-shot examples, prefill
  env.py         ConductorEnv: pool + task + prompt rules (randomized worker subsets, recursion)
  reward.py      WorkflowReward: trl reward function (0 unparsable / 0.5 wrong / 1 correct)
  warmstart.py   format-only supervised warm start for small policies
  train.py       train(cfg, out), cli_train(args) (`baton train conductor`)
  evaluate.py    evaluate_policy(generator, env, items)
  checkpoint.py  save_conductor(...), load_router(path, ...) -> ConductorRouter (ServingRouter)
  ablate.py      run_ablation(configs, out) -> list[dict]
  toy.py         ToyPool / ToyTask: an offline problem where the right workflow is learnable
"""
