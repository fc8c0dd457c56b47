"""python manage.py train_segmenter --data ../shared/data/nuclei --out DIR

Trains the nucleus model (analysis/core/cells/segmentation/nucleus_model) from scratch on the
hand-annotated tiles: first a cross-validation grouped by source slide (never by tile),
reported per dataset, then the final model on every tile. Seeded; tqdm progress; the GPU when
one is visible (LADDER_TORCH_DEVICE). Defaults take about 2 hours on 2 CPU cores
(3 folds x 1,200 iterations + 2,400 for the final model, ~1.3 s per iteration).

Writes DIR/ladder-nucleus.pt (load it with LADDER_NUCLEUS_WEIGHTS), DIR/cross_validation.json,
DIR/training.json and each fold's network (DIR/fold-<k>.pt, to re-score held-out tiles later).
Each fold also measures, beside the network's tumour call, a call from nucleus + neighbourhood
measurements (nucleus_model/tumour_context.py) fitted on that fold's outlines of its training
tiles: evidence for a question the model card discusses, not part of the product.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Train the nucleus segmentation model from hand-annotated tiles (cross-validated by slide)."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="folder of annotated sets (e.g. ../shared/data/nuclei)")
        parser.add_argument("--out", required=True)
        parser.add_argument("--iterations", type=int, default=2400, help="final model (0: cross-validation only)")
        parser.add_argument("--cv-iterations", type=int, default=1200, help="each cross-validation fold")
        parser.add_argument("--folds", type=int, default=3, help="0 skips cross-validation")
        parser.add_argument("--batch", type=int, default=12)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--datasets", nargs="*", default=None)
        parser.add_argument("--max-tiles", type=int, default=0, help="use only the first N tiles per dataset (tests)")

    def handle(self, *args, data, out, iterations, cv_iterations, folds, batch, seed, datasets, max_tiles, **options):
        import torch
        from tqdm import tqdm

        from analysis.core.cells.segmentation.nucleus_model.data import group_folds, load_tiles
        from analysis.core.cells.segmentation.nucleus_model.evaluation import pool_fold_scores, pooled_balanced_accuracy, score_tiles
        from analysis.core.cells.segmentation.nucleus_model.inference import LoadedModel, segment_rgb
        from analysis.core.cells.segmentation.nucleus_model.training import TrainConfig, save_weights, train_model
        from analysis.core.cells.segmentation.nucleus_model.tumour_context import call_tumour, fit_tumour_context
        from analysis.segmenters import torch_device

        tiles = load_tiles(root=Path(data), datasets=datasets)
        if max_tiles:
            kept, seen = [], {}
            for tile in tiles:
                seen[tile.dataset] = seen.get(tile.dataset, 0) + 1
                if seen[tile.dataset] <= max_tiles:
                    kept.append(tile)
            tiles = kept
        if not tiles:
            raise CommandError(f"no annotated tiles (image + .geojson) under {data}")
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        device = torch_device()
        self.stdout.write(f"{len(tiles)} tiles, {sum(t.n_nuclei for t in tiles):,} nuclei, device {device}")

        def fit(train_tiles, n, desc):
            config = TrainConfig(iterations=n, batch=batch, seed=seed, device=device)
            bar = tqdm(total=n, desc=desc, unit="it", disable=n < 2)
            model, history = train_model(tiles=train_tiles, config=config, log=lambda line: None,
                                         progress=lambda step, loss: (bar.update(1), bar.set_postfix(loss=f"{loss['total']:.3f}")))
            bar.close()
            return model, config, history

        report = {"folds": folds, "seed": seed, "cv_iterations": cv_iterations, "per_fold": []}
        if folds >= 2:
            fold_of = group_folds(tiles=tiles, n_folds=folds, seed=seed)
            pooled: dict[str, list] = {}
            for fold in range(folds):
                held = [t for t, f in zip(tiles, fold_of) if f == fold]
                train = [t for t, f in zip(tiles, fold_of) if f != fold]
                if not held or not train:
                    continue
                model, config, _ = fit(train, cv_iterations, f"fold {fold + 1}/{folds}")
                save_weights(model=model, config=config, path=out_dir / f"fold-{fold}.pt")  # for later what-ifs
                loaded = LoadedModel.from_model(model=model, config=config)
                # The product's tumour call is the network's head; the nucleus + neighbourhood call
                # (tumour_context.py, fitted on this fold's outlines of its training tiles) is
                # measured beside it on the same held-out nuclei, as evidence, not used.
                context = fit_tumour_context(loaded=loaded, tiles=train)

                def segment(rgb, mpp, loaded=loaded, context=None):
                    labels, cls, _, probs = segment_rgb(loaded=loaded, rgb=rgb, mpp=mpp)
                    if context is not None:
                        cls, _ = call_tumour(context=context, classes=loaded.classes, labels=labels, rgb=rgb, mpp=mpp, probs=probs)
                    return labels, cls

                scores = score_tiles(tiles=held, segment=segment)
                if context is not None:
                    by_context = score_tiles(tiles=[t for t in held if t.allowed],
                                             segment=lambda rgb, mpp, segment=segment, context=context: segment(rgb, mpp, context=context))
                    for dataset, row in by_context.items():
                        if "tumour_balanced_accuracy" in row:
                            scores[dataset]["context_call"] = {k: row[k] for k in (
                                "tumour_balanced_accuracy", "tumour_matched", "non_tumour_matched", "tumour_correct", "non_tumour_correct")}
                report["per_fold"].append({"fold": fold, "held_out_slides": sorted({t.slide for t in held}), "scores": scores})
                for dataset, row in scores.items():
                    pooled.setdefault(dataset, []).append(row)
            report["pooled"] = {dataset: pool_fold_scores(rows) for dataset, rows in pooled.items()}
            for dataset, rows in pooled.items():
                calls = [r["context_call"] for r in rows if "context_call" in r]
                if calls:
                    report["pooled"][dataset]["context_call_tumour_balanced_accuracy"] = pooled_balanced_accuracy(calls)
            for dataset, row in report["pooled"].items():
                tumour = f"  tumour BA {row['tumour_balanced_accuracy']:.3f}" if "tumour_balanced_accuracy" in row else ""
                if "context_call_tumour_balanced_accuracy" in row:
                    tumour += f" (nucleus + neighbourhood call, not used: {row['context_call_tumour_balanced_accuracy']:.3f})"
                self.stdout.write(f"CV {dataset}: F1 {row['f1']:.3f}  AJI {row['aji']:.3f}  Dice {row['dice']:.3f}  PQ {row['pq']:.3f}{tumour}")
        (out_dir / "cross_validation.json").write_text(json.dumps(report, indent=1))
        if iterations <= 0:
            self.stdout.write(self.style.SUCCESS(f"cross-validation written to {out_dir / 'cross_validation.json'}"))
            return
        model, config, history = fit(tiles, iterations, "final model")
        weights = out_dir / "ladder-nucleus.pt"
        save_weights(model=model, config=config, path=weights, history=history)
        (out_dir / "training.json").write_text(json.dumps({"config": asdict(config), "history": history,
                                                           "tiles": [t.slide + "/" + t.name for t in tiles]}, indent=1))
        torch.set_num_threads(torch.get_num_threads())
        self.stdout.write(self.style.SUCCESS(f"weights written to {weights}"))
