"""Runs examples/pretrain.py's trainer for the resume and distributed tests (a real process each time).

    python tests/pretrain_driver.py RECORD_DIR [pretrain flags...]

Environment (test use only): PROS_DRIVER_HOLD_AFTER_SAVE=N makes the process write RECORD_DIR/held-N and sleep after
the checkpoint of step N is saved, so that the test can SIGKILL it at a known point. Every process writes
RECORD_DIR/rank-R.json with checksums of its teacher, its center and its last health metrics.
"""

import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]


def load_pretrain_module():
    spec = importlib.util.spec_from_file_location("pretrain_example", ROOT / "examples" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HoldAfterSave(TrainerCallback):
    def __init__(self, record_dir: Path, step: int):
        self.record_dir, self.step = record_dir, step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            (self.record_dir / f"held-{self.step}").write_text("saved")
            time.sleep(600)  # the test kills the process here


def main() -> None:
    record_dir = Path(sys.argv[1])
    record_dir.mkdir(parents=True, exist_ok=True)
    pretrain = load_pretrain_module()
    trainer, resume = pretrain.build_trainer(sys.argv[2:])
    hold = os.environ.get("PROS_DRIVER_HOLD_AFTER_SAVE")
    if hold:
        trainer.add_callback(HoldAfterSave(record_dir, int(hold)))
    trainer.train(resume_from_checkpoint=resume)
    model = trainer.unwrapped_model
    digest = hashlib.sha256()
    for tensor in model.teacher.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    record = {
        "rank": trainer.args.process_index,
        "world_size": trainer.args.world_size,
        "global_step": trainer.state.global_step,
        "teacher_sha256": digest.hexdigest(),
        "teacher_student_differ": any(
            not t.equal(s) for t, s in zip(model.teacher.parameters(), model.student.parameters())
        ),
        "center": model.center.detach().cpu().flatten().tolist(),
        "last_metrics": {k: float(v) for k, v in trainer.last_metrics.items()},
        "own_images": trainer.skip_report.delivered,  # this process's
        "all_images": trainer.skip_summary["delivered"],  # every process's, gathered
    }
    (record_dir / f"rank-{trainer.args.process_index}.json").write_text(json.dumps(record))
    pretrain.finish(trainer)


if __name__ == "__main__":
    main()
