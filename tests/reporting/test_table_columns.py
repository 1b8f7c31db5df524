"""The secondary columns of the results table: one column per named metric, never its longer namesakes."""

from __future__ import annotations

from kdlab.reporting.tables import table_cells


def test_r_at_1_is_not_recall_at_10():
    row = {"method": "kd", "seeds": 3, "metric": "val_top1", "top1_mean": 65.0, "top1_std": 0.5,
           "retrieval_recall@1_mean": 56.2, "retrieval_recall@1_std": 0.7,
           "retrieval_recall@10_mean": 91.5, "retrieval_recall@10_std": 0.4,
           "retrieval_map_mean": 39.3, "retrieval_map_std": 0.5}
    header, cells = table_cells([row], best=False)
    assert header.count("R@1 %") == 1 and header.count("retrieval mAP %") == 1
    shown = dict(zip(header, cells[0]))
    assert shown["R@1 %"].startswith("56.2") and not any(cell.startswith("91.5") for cell in cells[0])


def test_a_header_with_a_placeholder_still_takes_every_metric_of_its_prefix():
    row = {"method": "kd", "seeds": 1, "metric": "val_top1", "top1_mean": 65.0, "top1_std": 0.0,
           "transfer_digits_mean": 95.0, "transfer_digits_std": 0.0, "transfer_cifar10_mean": 80.0,
           "transfer_cifar10_std": 0.0}
    header, _ = table_cells([row], best=False)
    assert "transfer digits %" in header and "transfer cifar10 %" in header
