"""The curated mutants `tools/mutants.py` applies: each a plausible bug and the tests that must
catch it. Keep it current as code moves: a mutant whose `old` snippet is no longer found exactly
once is an error naming it. Add a mutant with every bug fixed or test written for a property.

`issue14-*`: the 13 wrong changes issue 14 found unnoticed (today's code is right on each).
Tests kept small (a file or a node id) so the whole list runs in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the project root
    old: str  # exact snippet, present once in `file`
    new: str  # the wrong version
    tests: tuple[str, ...]  # pytest files or node ids that must fail on it
    why: str  # what would go unnoticed if it survived
    marks: str | None = None  # a pytest -m expression, for mutants only slow tests can catch


BATCHES = "embeval/core/batches.py"
LOSSES = "embeval/core/losses.py"
METRICS = "embeval/eval/metrics/similarity.py"
DIAGNOSTICS = "embeval/eval/metrics/diagnostics.py"
FRAME = "embeval/results/frame.py"
STATS = "embeval/eval/metrics/stats.py"
TABLES = "embeval/eval/report/tables.py"
SCORE = "embeval/eval/scoring/score.py"
TRANSFER = "embeval/eval/scoring/transfer.py"
TASKS = "embeval/eval/data/tasks.py"
CKPT = "embeval/core/checkpoint.py"
DIST = "tests/test_distributed.py::"
OBJECTIVE_2P = DIST + "test_an_objective_on_two_processes_equals_one_process_on_the_global_batch"
QUEUE_RESUME_2P = DIST + "test_two_process_resume_restores_every_rank_s_momentum_queue"

MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------ issue 14's 13 survivors
    Mutant(
        "issue14-01-trainer-focal-m-name",
        LOSSES,  # the loss's arguments: the config's over the signature's defaults
        "resolved = {**defaults, **converted}",
        "resolved = {**converted, **defaults}",
        (
            "tests/test_trainer.py::test_contrastive_loss_is_focal_infonce_of_the_cosines_with_the_config_s_tau_and_m",
            "tests/test_trainer.py::test_contrastive_loss_uses_the_config_s_temperature_and_normalises",
            "tests/test_trainer.py::test_focal_m_defaults_are_the_paper_s",
        ),
        "--focal-m / --loss-arg m silently dropped: every run trains with the loss's default m",
    ),
    Mutant(
        "issue14-02-trainer-ignores-temp",
        BATCHES,
        "tau = cfg.temperature if temperature is None else temperature",
        "tau = 0.05 if temperature is None else temperature",
        (
            "tests/test_trainer.py::test_contrastive_loss_is_focal_infonce_of_the_cosines_with_the_config_s_tau_and_m",
            "tests/test_trainer.py::test_contrastive_loss_uses_the_config_s_temperature_and_normalises",
            "tests/test_trainer.py::test_focal_m_defaults_are_the_paper_s",
        ),
        "--temp ignored, always 0.05",
    ),
    Mutant(
        "issue14-03-trainer-no-l2-normalise",
        BATCHES,
        "emb = F.normalize(emb[..., :dim].float(), dim=-1)  # cosine in float32",
        "emb = emb[..., :dim].float()",
        (
            "tests/test_trainer.py::test_contrastive_loss_is_focal_infonce_of_the_cosines_with_the_config_s_tau_and_m",
            "tests/test_trainer.py::test_contrastive_loss_uses_the_config_s_temperature_and_normalises",
            "tests/test_trainer.py::test_focal_m_defaults_are_the_paper_s",
        ),
        "dot products instead of cosines in the similarity matrix",
    ),
    Mutant(
        "issue14-04-sts-primary-mean",
        SCORE,
        '**agg["aggregates"]["all"], **agg}',
        '**agg["aggregates"]["mean"], **agg}',
        ("tests/test_score_protocol.py",),
        "STS12-16 report SentEval's subset mean instead of SimCSE's pooled `all`",
    ),
    Mutant(
        "issue14-05-cache-key-without-max-length",
        CKPT,
        'h.update(f"pooler={pooler};max_length={max_length}".encode())',
        'h.update(f"pooler={pooler}".encode())',
        ("tests/test_cache_keys.py",),
        "a --max-length 32 run serves its truncated vectors to a full-length run",
    ),
    Mutant(
        "issue14-06-fingerprint-weights-only",
        CKPT,
        'names = set(WEIGHT_FILES + TOKENIZER_FILES + ("config.json",))',
        "names = set(WEIGHT_FILES)",
        ("tests/test_cache_keys.py",),
        "a changed tokenizer or config.json keeps serving the old vectors",
    ),
    Mutant(
        "issue14-07-encoder-key-without-dtype",
        "embeval/eval/encoders/transformer.py",
        '+ f";dtype={dtype}"',
        "",
        ("tests/test_cache_keys.py",),
        "float16 vectors served to a float32 run",
    ),
    Mutant(
        "issue14-08-focal-default-m",
        LOSSES,
        "temperature: float = 0.05, m: float = 0.3)",
        "temperature: float = 0.05, m: float = 0.2)",
        ("tests/test_losses.py", "tests/test_trainer.py::test_focal_m_defaults_are_the_paper_s"),
        "the documented default m of Focal-InfoNCE changes unseen",
    ),
    Mutant(
        "issue14-09-markdown-pipe-unescaped",
        "embeval/eval/report/export.py",
        'for ch in "\\\\|*_`<>[]":',
        'for ch in "\\\\*_`<>[]":',
        ("tests/test_report_stats.py",),
        "a '|' in a run name adds a column to the Markdown table",
    ),
    Mutant(
        "issue14-10-sst2-c-on-test",
        TRANSFER,
        "[res] = _fits([(regs, xtr, tr.y, None, None, xdv, dv.y)], cfg)",
        "[res] = _fits([(regs, xtr, tr.y, None, None, xte, te.y)], cfg)",
        ("tests/test_transfer.py::test_sst2_picks_c_on_dev_not_test",),
        "SST2's L2 strength tuned on the test set",
    ),
    Mutant(
        "issue14-11-alignment-all-pairs",
        DIAGNOSTICS,
        "pos = np.asarray(gold) > POSITIVE_GOLD_MIN",
        "pos = np.asarray(gold) >= 0",
        ("tests/test_score_protocol.py", "tests/test_diagnostics.py"),
        "alignment over every STS-B pair, not the positives (gold > 4)",
    ),
    Mutant(
        "issue14-12-mteb-revision-typo",
        TASKS,
        '"a0d554a64d88156834ff5ae9920b964011b16384"',
        '"a0d554a64d88156834ff5ae9920b964011b16385"',
        ("tests/test_mteb_export.py::test_mteb_loader_sees_every_score",),
        "exported STS12 results name a dataset revision MTEB does not have",
        marks="slow",
    ),
    Mutant(
        "issue14-13-avg-ci-six-tasks",
        TABLES,
        "avg = np.mean([per[t] for t in avg_tasks], axis=0)  # (B,)",
        "avg = np.mean([per[t] for t in avg_tasks[:6]], axis=0)  # (B,)",
        ("tests/test_report_stats.py",),
        "the Avg interval averages six tasks, not seven",
    ),
    Mutant(
        "issue14-avg-ci-one-stream",
        TABLES,
        "task_seed = stats.task_seed(seed, t)",
        "task_seed = seed",
        ("tests/test_report_stats.py",),
        "every task resampled with the same index rows: Avg interval too wide",
    ),
    # ------------------------------------------------------------ metrics
    Mutant(
        "metrics-cosine-unnormalised",
        METRICS,
        "(l2_normalize(a) * l2_normalize(b)).sum(axis=1))",
        "(a * b).sum(axis=1))",
        ("tests/test_metrics.py",),
        "STS similarities are dot products",
    ),
    Mutant(
        "metrics-identical-pairs-not-exactly-one",
        METRICS,
        "np.where(same, 1.0,",
        "np.where(same & False, 1.0,",
        ("tests/test_metrics.py",),
        "identical pairs get 1 +- 2e-16, so a subset's Spearman moves with --batch-size (issue 13)",
    ),
    Mutant(
        "metrics-simcse-avg-unrounded",
        METRICS,
        "return float(np.mean([round(s, 2) for s in scores]))",
        "return float(np.mean(scores))",
        ("tests/test_metrics.py",),
        "Avg. differs from SimCSE's in the second decimal",
    ),
    Mutant(
        "metrics-wmean-unweighted",
        METRICS,
        'agg.setdefault("wmean", {})[key] = float((vals * n).sum() / n.sum())',
        'agg.setdefault("wmean", {})[key] = float(vals.mean())',
        ("tests/test_metrics.py",),
        "SentEval's wmean not weighted by pair count",
    ),
    Mutant(
        "metrics-uniformity-t1",
        METRICS,
        "def uniformity(x: np.ndarray, t: float = 2.0,",
        "def uniformity(x: np.ndarray, t: float = 1.0,",
        ("tests/test_metrics.py",),
        "uniformity with t = 1, not Wang & Isola's t = 2",
    ),
    Mutant(
        "metrics-anisotropy-counts-self-pairs",
        METRICS,
        "return (total - n) / (n * (n - 1))",
        "return total / (n * n)",
        ("tests/test_metrics.py",),
        "anisotropy includes each vector's cosine with itself",
    ),
    # ------------------------------------------------------------ stats
    Mutant(
        "stats-ci-90-percent",
        STATS,
        "[50 * (1 - level), 50 * (1 + level)]",
        "[5.0, 95.0]",
        ("tests/test_stats.py",),
        "a 90 % interval labelled 95 %",
    ),
    Mutant(
        "stats-p-value-zero-possible",
        STATS,
        "return float((extreme.sum() + 1) / (len(d) + 1))",
        "return float(extreme.sum() / len(d))",
        ("tests/test_stats.py",),
        "p = 0 reported from a finite bootstrap",
    ),
    Mutant(
        "stats-p-value-not-centred",
        STATS,
        "extreme = np.abs(d - observed) >= abs(observed) - 1e-12",
        "extreme = np.abs(d) >= abs(observed) - 1e-12",
        ("tests/test_stats.py",),
        "the paired test does not shift the differences to the null",
    ),
    Mutant(
        "stats-ordinal-ranks",
        STATS,
        "g = rankdata(gold[idx], axis=1)  # (C, N)",
        'g = rankdata(gold[idx], axis=1, method="ordinal")  # (C, N)',
        ("tests/test_stats.py",),
        "ties in gold ranked arbitrarily, unlike scipy's Spearman",
    ),
    # ------------------------------------------------------------ datasets, score, cache
    Mutant(
        "datasets-stsb-gold-column",
        "embeval/eval/data/sts.py",
        "gold.append(_score(cols[4], path, i))",
        "gold.append(_score(cols[3], path, i))",
        ("tests/test_datasets.py",),
        "STS-B gold read from the pair id column",
    ),
    Mutant(
        "score-alignment-gold-4-inclusive",
        DIAGNOSTICS,
        "pos = np.asarray(gold) > POSITIVE_GOLD_MIN",
        "pos = np.asarray(gold) >= POSITIVE_GOLD_MIN",
        ("tests/test_score_protocol.py", "tests/test_diagnostics.py"),
        "pairs with gold exactly 4 counted as positives (SimCSE: > 4)",
    ),
    Mutant(
        "cache-no-checksum",
        "embeval/eval/encoders/cache.py",
        "or vecs.ndim != 2 or _digest(keys, vecs) != digest:",
        "or vecs.ndim != 2:",
        ("tests/test_cache.py",),
        "a corrupted cache shard served as embeddings",
    ),
    Mutant(
        "checkpoint-key-without-normalize",
        CKPT,
        'h.update(b";normalize")',
        "pass",
        ("tests/test_cache_keys.py",),
        "a checkpoint with Normalize and the same one without get one fingerprint: their results "
        "files claim the same model (the cache, which holds raw vectors, rightly shares them)",
    ),
    # ------------------------------------------------------------ task registry
    Mutant(
        "tasks-avg-over-every-sts-task",
        SCORE,
        "avg_tasks = task_registry.simcse_avg_tasks()",
        'avg_tasks = [t.name for t in task_registry.group("sts")]',
        ("tests/test_tasks.py",),
        "a newly registered STS task silently changes SimCSE's Avg. column",
    ),
    Mutant(
        "tasks-transfer-avg-over-every-transfer-task",
        TASKS,
        "return [n for n, t in TASKS.items() if t.in_transfer_avg]",
        'return [n for n, t in TASKS.items() if t.kind == "transfer"]',
        ("tests/test_tasks.py",),
        "a newly registered transfer task silently changes the transfer Avg.",
    ),
    Mutant(
        "tasks-user-code-not-checked",
        TASKS,
        "    if not isinstance(unit, Task):",
        "    if False:",
        ("tests/test_tasks.py",),
        "`--tasks mod:fn` with a function, not a Task, fails later with an AttributeError",
    ),
    Mutant(
        "data-str-root-not-a-path",
        "embeval/eval/data/sts.py",
        '    """The folder that holds STS12-en-test/ … for a protocol; `root` may be that folder '
        'itself."""\n    root = Path(root)\n',
        '    """The folder that holds STS12-en-test/ … for a protocol; `root` may be that folder '
        'itself."""\n',
        ("tests/test_tasks.py",),
        "load_sts(..., root='data') fails with an AttributeError (str has no .name)",
    ),
    # ------------------------------------------------------------ transfer
    Mutant(
        "transfer-trec-c-grid",
        TRANSFER,
        "k, regs = cfg.kfold, [2.0**t for t in range(-1, 6)]",
        "k, regs = cfg.kfold, [2.0**t for t in range(-2, 4)]",
        ("tests/test_transfer.py::test_trec_mrpc_search_senteval_kfold_grid",),
        "TREC/MRPC search SentEval's other C grid",
    ),
    Mutant(
        "transfer-mrpc-features",
        TRANSFER,
        "return np.concatenate([np.abs(u - v), u * v], axis=1)",
        "return np.concatenate([u - v, u * v], axis=1)",
        ("tests/test_transfer.py::test_pair_features",),
        "MRPC features without the absolute difference",
    ),
    # ------------------------------------------------------------ losses
    Mutant(
        "losses-sup-simcse-bonus-on-all-negatives",
        LOSSES,
        "bonus[:, b:] = torch.eye(b, dtype=sim.dtype, device=sim.device) * hard_negative_weight",
        "bonus[:, b:] = hard_negative_weight",
        ("tests/test_losses.py",),
        "the hard-negative weight added to every hard negative, not the anchor's own",
    ),
    Mutant(
        "losses-uniformity-t1",
        LOSSES,
        "uniformity = torch.logsumexp(-2 * off, 0)",
        "uniformity = torch.logsumexp(-1 * off, 0)",
        ("tests/test_losses.py",),
        "align-uniform's uniformity term with t = 1",
    ),
    # ------------------------------------------------------------ report, export, files
    Mutant(
        "report-best-is-min",
        TABLES,
        "top = round(min(vals) if col in lower else max(vals), 2)",
        "top = round(min(vals) if col not in lower else max(vals), 2)",
        ("tests/test_report.py",),
        "the worst figure of a column shown in bold",
    ),
    Mutant(
        "report-delta-sign",
        TABLES,
        "else v - b",
        "else b - v",
        ("tests/test_report.py",),
        "differences to the baseline with the wrong sign",
    ),
    Mutant(
        "report-partial-mixed-with-full",
        TABLES,
        'limit = meta.get("limit") if meta.get("partial", bool(meta.get("limit"))) else None',
        "limit = None",
        ("tests/test_report.py",),
        "--limit runs compared in one table with full runs",
    ),
    # ------------------------------------------------------------ poolers, post-processing
    Mutant(
        "poolers-avg-first-last-embeddings",
        "embeval/core/poolers.py",
        "masked_mean((hidden_states[1] + hidden_states[-1]) / 2, mask)",
        "masked_mean((hidden_states[0] + hidden_states[-1]) / 2, mask)",
        ("tests/test_poolers.py",),
        "avg_first_last averages the embedding output, not SimCSE's first layer",
    ),
    Mutant(
        "poolers-user-key-without-source",
        "embeval/core/poolers.py",
        'return f"{name}@{hashlib.sha256(source.encode()).hexdigest()[:16]}"',
        "return name",
        ("tests/test_poolers.py::test_user_pooler_through_embeval_score",),
        "an edited user pooler is served its previous version's cached vectors",
    ),
    Mutant(
        "postprocess-normalize-identity",
        "embeval/eval/encoders/postprocess.py",
        "return (x / np.maximum(torch_cpu_norm(x), 1e-12)).astype(np.float32, copy=False)",
        "return x",
        ("tests/test_postprocess.py", "tests/test_encode.py"),
        "a Normalize checkpoint scored on raw vectors (transfer tasks see other features)",
    ),
    Mutant(
        "postprocess-normalize-numpy-norm",
        "embeval/eval/encoders/postprocess.py",
        "x / np.maximum(torch_cpu_norm(x), 1e-12)",
        "x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)",
        ("tests/test_postprocess.py::test_normalize_equals_the_old_in_model_normalisation",),
        "unit vectors 1 ulp off the in-model ones: transfer accuracies move (TREC by 0.2)",
    ),
    Mutant(
        "chain-ignores-declared-normalize",
        "embeval/eval/encoders/chain.py",
        'declared = ["normalize"] if normalize else []',
        "declared = []",
        ("tests/test_encode.py::test_normalize_module_gives_sentence_transformers_embeddings",),
        "the checkpoint's Normalize module dropped from the encoder chain",
    ),
    Mutant(
        "train-eval-without-normalize",
        "embeval/cli/train.py",
        "            normalize=normalize,\n",
        "            normalize=False,\n",
        ("tests/test_postprocess.py::test_training_evaluation_builds_the_score_chain",),
        "the dev score in training skips the Normalize `embeval score` applies to the checkpoint",
    ),
    Mutant(
        "score-fits-on-the-whole-run",
        SCORE,
        "vectors = task_vectors(task, [*d.s1, *d.s2])",
        "vectors = task_vectors(task, sentences)",
        ("tests/test_postprocess.py::test_fitted_post_processor_is_fitted_per_task_in_score",),
        "a fitted post-processor fitted on all tasks' sentences at once, not each task's own",
    ),
    Mutant(
        "export-csv-pearson-is-spearman",
        "embeval/eval/report/export.py",
        "_num(r.value if r else None)]",
        "_num(c.value if r else None)]",
        ("tests/test_report.py::test_pearson_in_markdown_and_csv",),
        "the CSV's pearson column repeats the Spearman figure",
    ),
    Mutant(
        "check-imports-the-plotting-stack",
        "embeval/eval/scoring/check.py",
        "from embeval.eval.report.formatting import format_p",
        "import matplotlib.pyplot\nfrom embeval.eval.report.formatting import format_p",
        ("tests/test_light_imports.py",),
        "`embeval check` loads matplotlib again to print a p-value",
    ),
    Mutant(
        "plots-import-matplotlib-at-load",
        "embeval/eval/report/plots.py",
        "import numpy as np\n\nfrom embeval.eval.metrics.diagnostics import DIAGNOSTICS",
        "import matplotlib.pyplot\nimport numpy as np\n\n"
        "from embeval.eval.metrics.diagnostics import DIAGNOSTICS",
        ("tests/test_light_imports.py",),
        "`embeval report --format md|csv` loads matplotlib again, drawing nothing",
    ),
    # ------------------------------------------------------------ results as data
    Mutant(
        "frame-ci-one-stream-for-all-tasks",
        FRAME,
        'ci = _intervals(p["sim"], p["gold"], n_boot, stats.task_seed(seed, task)) if p else {}',
        'ci = _intervals(p["sim"], p["gold"], n_boot, seed) if p else {}',
        ("tests/test_frame.py",),
        "the frame's intervals are not the report's (every task on one resample stream)",
    ),
    Mutant(
        "frame-pearson-other-resamples",
        FRAME,
        "r = stats.bootstrap_pearson(sim, gold, n_boot, seed)  # (B,)",
        "r = stats.bootstrap_pearson(sim, gold, n_boot, [*np.atleast_1d(seed), 1])  # (B,)",
        ("tests/test_frame.py",),
        "a task's Pearson interval drawn from other resamples than its Spearman one",
    ),
    Mutant(
        "records-key-order-lost",
        "embeval/results/records.py",
        "return _ordered({**out, **self.extra}, order)",
        "return {**out, **self.extra}",
        ("tests/test_records.py",),
        "a record written back reorders the file's keys (results no longer byte-identical)",
    ),
    Mutant(
        "fileio-temp-file-left-behind",
        "embeval/core/fileio.py",
        "        os.replace(tmp, path)\n    except BaseException:",
        "        os.replace(tmp, path)\n    except ImportError:",
        ("tests/test_fileio.py",),
        "a failed write leaves its temporary file behind",
    ),
    Mutant(
        "objective-head-grads-not-averaged",
        "embeval/core/trainer.py",
        "dist.average_gradients(trainable(self.objective))",
        "None",
        (OBJECTIVE_2P,),
        "under torchrun each rank's objective head drifts on its own slice's gradient",
    ),
    Mutant(
        "objective-loss-not-per-world",
        BATCHES,
        "                aux = aux / self.world + (whole - aux.detach() / self.world)",
        "                aux = aux + (whole - aux.detach())",
        (OBJECTIVE_2P,),
        "an objective's gradient is world times too large under torchrun",
    ),
    Mutant(
        "resume-queue-of-rank-0-everywhere",
        "embeval/core/trainer.py",
        "        if len(own) == self.world:",
        "        if len(own) == self.world and False:",
        (QUEUE_RESUME_2P,),
        "a multi-process ESimCSE run resumed gives every rank process 0's queue",
    ),
    Mutant(
        "check-ignores-post-processing",
        "embeval/eval/scoring/check.py",
        "    if ca != cb and not allow_postprocess:",
        "    if False:",
        ("tests/test_check.py::test_another_post_processing_is_refused_unless_allowed",),
        "a whitened result gates against a plain baseline on whitening's effect",
    ),
]
