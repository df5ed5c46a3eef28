DROP TABLE eval_results;
DROP TABLE eval_runs;
DROP TABLE testsets;
