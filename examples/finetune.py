"""Fine-tuning with fl.freeze_ and fl.adjust_: an MLP learns digits 0-4
(scikit-learn's 8x8 digits), then its body is reused for digits 5-9, of which
it sees only 160 training images. Phase 2 trains a new head (at 1e-2) with
the body frozen (`fl.freeze_(state.layers.body)`), and checks that the body's
weights and its optimiser state did not move at all; phase 3 thaws
everything (`fl.thaw_`) and sets one rate per part with `fl.adjust_` on a
subtree: 1e-4 for the body, 1e-3 for the head. The old 0-4 head, which
shares the body, is scored after each phase. A network trained from scratch
on the same 160 images is the baseline; it says whether the transfer helped
(here it does not: 160 images of 5-9 are enough to learn them from scratch).
It draws the curves across the phases and how far each layer's weights move
from where fine-tuning started.

    python examples/finetune.py            # 20 + 30 + 30 epochs; writes docs/gallery/figures/finetune-*.png
    python examples/finetune.py --short    # 2 epochs a phase, no figures (CI)
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import options, pyplot, savefig
from sklearn.datasets import load_digits

import fluxlike as fl


def main(argv: list[str] | None = None) -> dict:
    args = options(__doc__, argv)
    seed = 0
    e_pre, e_frozen, e_thawed = (2, 2, 2) if args.short else (20, 30, 30)
    n_few = 160                                         # training images of digits 5-9: 5 batches
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")          # (1797, 64), pixels in [0, 1]
    y = digits.target
    rng = np.random.default_rng(seed)
    a = rng.permutation(np.flatnonzero(y < 5))          # task A: digits 0-4
    b = rng.permutation(np.flatnonzero(y >= 5))         # task B: digits 5-9
    n_pre = n_few if args.short else 704                # whole batches of 32 (--short: one compiled epoch)
    a_train, a_test = a[:n_pre], a[n_pre:]
    b_train, b_test = b[:n_few], b[n_few:]
    ya, yb = y, y - 5                                   # class indices 0-4 in both tasks
    Ya = np.asarray(fl.onehotbatch(ya[a_train], range(5)))
    Yb = np.asarray(fl.onehotbatch(yb[b_train], range(5)))
    loader_a = fl.DataLoader((X[a_train], Ya), batchsize=32, shuffle=True, rng=seed)
    loader_b = fl.DataLoader((X[b_train], Yb), batchsize=32, shuffle=True, rng=seed)
    print(f"task A (digits 0-4): {len(a_train)} training, {len(a_test)} held-out images; "
          f"task B (digits 5-9): {len(b_train)} training, {len(b_test)} held-out images")

    def loss(m, x, y):
        return fl.losses.logitcrossentropy(m(x), y)

    def accuracy(m, idx, labels):
        return float(jnp.mean(fl.onecold(m(X[idx])) == labels[idx]))

    def snapshot(tree):
        return jax.tree.map(lambda v: np.array(v), tree)

    def maxchange(before, after):
        return max((float(np.max(np.abs(np.asarray(u) - v))) for u, v in
                    zip(jax.tree.leaves(after), jax.tree.leaves(before))), default=0.0)

    fl.seed(seed)
    body = fl.Chain(fl.Dense(64, 128, fl.relu), fl.Dense(128, 64, fl.relu))
    model = fl.Chain(body=body, head=fl.Dense(64, 5))
    print(model)
    t0 = time.perf_counter()

    # Phase 1: pretrain body and head on digits 0-4.
    history = {"loss": [], "acc": [], "phase": []}
    state = fl.setup(fl.Adam(1e-3), model)
    for epoch in range(1, e_pre + 1):
        losses = fl.train_(loss, model, loader_a, state)
        history["loss"].append(float(losses.mean()))
        history["acc"].append(accuracy(model, a_test, ya))
        history["phase"].append(1)
    acc_pre = history["acc"][-1]
    print(f"phase 1, pretrain on 0-4 ({e_pre} epochs): held-out accuracy on 0-4 {acc_pre:.3f}")

    # Phase 2: the same body, a new head for digits 5-9; the body is frozen.
    model_a = model                                     # keeps the 0-4 head, shares the body
    model = fl.Chain(body=body, head=fl.Dense(64, 5))
    state = fl.setup(fl.Adam(1e-2), model)              # a linear probe takes a higher rate
    fl.freeze_(state.layers.body)
    pretrained = snapshot(model.layers.body)
    body_opt = snapshot(state.layers.body)              # the body's Adam moments
    head_init = snapshot(model.layers.head)
    print(f"phase 2 starts: new head, held-out accuracy on 5-9 {accuracy(model, b_test, yb):.3f} (chance 0.2)")

    def layer_norms():
        """How far each layer's weight is from where phase 2 started."""
        now = [model.layers.body.layers[0].weight, model.layers.body.layers[1].weight,
               model.layers.head.weight]
        start = [pretrained.layers[0].weight, pretrained.layers[1].weight, head_init.weight]
        return [float(np.linalg.norm(np.asarray(w) - w0)) for w, w0 in zip(now, start)]

    moved = [[0.0, 0.0, 0.0]]
    for epoch in range(1, e_frozen + 1):
        losses = fl.train_(loss, model, loader_b, state)
        history["loss"].append(float(losses.mean()))
        history["acc"].append(accuracy(model, b_test, yb))
        history["phase"].append(2)
        moved.append(layer_norms())
    acc_frozen = history["acc"][-1]
    body_change = maxchange(pretrained, model.layers.body)
    body_opt_change = maxchange(body_opt, state.layers.body)
    head_change = maxchange(head_init, model.layers.head)
    acc_a_frozen = accuracy(model_a, a_test, ya)
    print(f"phase 2, frozen body ({e_frozen} epochs): held-out accuracy on 5-9 {acc_frozen:.3f}; "
          f"on 0-4 with the old head {acc_a_frozen:.3f}")
    print(f"  max |change| of the frozen body's weights {body_change:.3g}, of its Adam state "
          f"{body_opt_change:.3g}; of the head's weights {head_change:.3g}")

    # Phase 3: thaw everything; the body learns ten times slower than the head.
    fl.thaw_(state)
    fl.adjust_(state.layers.body, 1e-4)
    fl.adjust_(state.layers.head, 1e-3)
    lr_body, lr_head = fl.learning_rate(state.layers.body), fl.learning_rate(state.layers.head)
    print(f"phase 3 starts: thawed; learning rate body {lr_body:.0e}, head {lr_head:.0e}")
    for epoch in range(1, e_thawed + 1):
        losses = fl.train_(loss, model, loader_b, state, progress=not args.short)
        history["loss"].append(float(losses.mean()))
        history["acc"].append(accuracy(model, b_test, yb))
        history["phase"].append(3)
        moved.append(layer_norms())
    acc_thawed = history["acc"][-1]
    print(f"phase 3, all thawed ({e_thawed} epochs): held-out accuracy on 5-9 {acc_thawed:.3f}; "
          f"body moved {moved[-1][0]:.3f} and {moved[-1][1]:.3f} (Frobenius norm of the change, layers 1-2)")
    acc_a_thawed = accuracy(model_a, a_test, ya)
    print(f"  on 0-4 with the old head (the body is shared): {acc_a_thawed:.3f}")

    # Baseline: the same network from scratch on the same 160 images of 5-9.
    fl.seed(seed + 1)
    scratch = fl.Chain(body=fl.Chain(fl.Dense(64, 128, fl.relu), fl.Dense(128, 64, fl.relu)),
                       head=fl.Dense(64, 5))
    s_state = fl.setup(fl.Adam(1e-3), scratch)
    scratch_acc = []
    for epoch in range(1, e_frozen + e_thawed + 1):
        fl.train_(loss, scratch, loader_b, s_state)
        scratch_acc.append(accuracy(scratch, b_test, yb))
    acc_scratch = scratch_acc[-1]
    print(f"baseline, from scratch on the same {n_few} images ({e_frozen + e_thawed} epochs): "
          f"held-out accuracy on 5-9 {acc_scratch:.3f}")
    print(f"fine-tuned minus from scratch: {acc_thawed - acc_scratch:+.3f}")
    print(f"{time.perf_counter() - t0:.1f} s of training in all; the frozen body did not move: {body_change == 0.0}")

    if args.figures:
        plt = pyplot()
        phases = [("pretrain on 0-4, Adam 1e-3", None), ("body frozen, head 1e-2", "C0"),
                  ("thawed: body 1e-4, head 1e-3", "C1")]

        def shade(ax, edges, legend=True):
            """Shade the fine-tuning phases, with a legend entry each."""
            for (text, color), lo, hi in zip(phases[-len(edges) + 1:], edges[:-1], edges[1:]):
                if color is not None:
                    ax.axvspan(lo, hi, color=color, alpha=0.08, lw=0, label=text if legend else None)

        ep = np.arange(1, len(history["loss"]) + 1)
        edges = [0.5, e_pre + 0.5, e_pre + e_frozen + 0.5, e_pre + e_frozen + e_thawed + 0.5]
        fig, (l, r) = plt.subplots(1, 2, figsize=(10, 3.8))
        l.plot(ep[:e_pre], history["loss"][:e_pre], marker="o", ms=2.5, color="C2", label="digits 0-4")
        l.plot(ep[e_pre:], history["loss"][e_pre:], marker="o", ms=2.5, color="C3", label="digits 5-9")
        shade(l, edges)
        l.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title="training loss")
        l.legend(fontsize=7, loc="upper right")
        r.plot(ep[:e_pre], history["acc"][:e_pre], marker="o", ms=2.5, color="C2", label="0-4 (pretraining)")
        r.plot(ep[e_pre:], history["acc"][e_pre:], marker="o", ms=2.5, color="C3", label="5-9, fine-tuned")
        r.plot(ep[e_pre:], scratch_acc, ls="--", color="grey", label=f"5-9, from scratch on the same {n_few} images")
        shade(r, edges, legend=False)
        r.set(xlabel="epoch", ylabel="held-out accuracy", title="accuracy on the current task")
        r.legend(fontsize=7, loc="lower right")
        savefig(fig, args.figures, "finetune-curves")

        moved_a = np.asarray(moved)
        e2 = np.arange(0, e_frozen + e_thawed + 1)
        edges2 = [0, e_frozen + 0.5, e_frozen + e_thawed]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        a.plot(e2, moved_a[:, 0], marker="o", ms=2.5, color="C4", label="body layer 1 (64 => 128)")
        a.plot(e2, moved_a[:, 1], marker="o", ms=2.5, color="C5", label="body layer 2 (128 => 64)")
        b.plot(e2, moved_a[:, 2], marker="o", ms=2.5, color="C3", label="new head (64 => 5)")
        for ax, what in [(a, "the body: frozen, then thawed"), (b, "the new head")]:
            shade(ax, edges2, legend=ax is a)
            ax.set(xlabel="epoch of fine-tuning", ylabel="‖W − W at the start of fine-tuning‖",
                   title=what)
            ax.legend(fontsize=7, loc="upper left")
        savefig(fig, args.figures, "finetune-weights")
    return {"acc_pretrain": acc_pre, "acc_frozen": acc_frozen, "acc_thawed": acc_thawed,
            "acc_scratch": acc_scratch, "acc_a_frozen": acc_a_frozen, "acc_a_thawed": acc_a_thawed,
            "body_change_frozen": body_change,
            "body_opt_change_frozen": body_opt_change, "head_change_frozen": head_change,
            "lr_body": lr_body, "lr_head": lr_head, "moved": moved, **history,
            "scratch_acc": scratch_acc}


if __name__ == "__main__":
    main()
