"""A character-level language model: a small causal transformer
(`fl.Embedding`, `fl.MultiHeadAttention` with `fl.make_causal_mask`,
`fl.LayerNorm`) learns to continue Python's own help texts, the
`pydoc_data.topics` module that ships with the standard library (the pages
`help("if")` shows). The last tenth of the text is held out. It prints each
epoch's training loss and the held-out bits per character, samples a
continuation of a prompt (temperature sampling with an explicit JAX key),
and draws the train and held-out loss curves.

    python examples/charlm.py            # 4 epochs on 418_432 characters; writes docs/gallery/figures/charlm-curves.png
    python examples/charlm.py --short    # 1 epoch on 7_936 characters, no figures (CI)
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import options, pyplot, savefig
from pydoc_data.topics import topics

import fluxlike as fl


class Block(fl.Module):
    """A pre-norm transformer block: causal self-attention, then an MLP, each
    with a residual connection."""

    ln1: fl.LayerNorm
    attn: fl.MultiHeadAttention
    ln2: fl.LayerNorm
    mlp: fl.Chain

    def __init__(self, d: int, nheads: int) -> None:
        self.ln1 = fl.LayerNorm(d)
        self.attn = fl.MultiHeadAttention(d, nheads=nheads)
        self.ln2 = fl.LayerNorm(d)
        self.mlp = fl.Chain(fl.Dense(d, 4 * d, fl.gelu), fl.Dense(4 * d, d))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.ln1(x)
        a, _ = self.attn(h, mask=fl.make_causal_mask(h))   # position t sees positions 0..t
        x = x + a
        return x + self.mlp(self.ln2(x))



class CharLM(fl.Module):
    """Characters (batch, time) -> logits of the next character (batch, time, vocab)."""

    tok: fl.Embedding
    pos: fl.Embedding
    blocks: fl.Chain
    ln: fl.LayerNorm
    out: fl.Dense

    def __init__(self, vocab: int, context: int, d: int, nheads: int, nlayers: int) -> None:
        self.tok = fl.Embedding(vocab, d, init=lambda k, s, t: 0.02 * jax.random.normal(k, s, t))
        self.pos = fl.Embedding(context, d, init=lambda k, s, t: 0.02 * jax.random.normal(k, s, t))
        self.blocks = fl.Chain(*[Block(d, nheads) for _ in range(nlayers)])
        self.ln = fl.LayerNorm(d)
        self.out = fl.Dense(d, vocab)

    def __call__(self, idx: jax.Array) -> jax.Array:
        x = self.tok(idx) + self.pos(jnp.arange(idx.shape[-1]))
        return self.out(self.ln(self.blocks(x)))



def windows(ids: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of `T` characters and the `T` characters after
    each of their positions (the targets): (n, T) and (n, T)."""
    n = (len(ids) - 1) // T
    return ids[:n * T].reshape(n, T), ids[1:n * T + 1].reshape(n, T)


def main(argv: list[str] | None = None) -> dict:
    args = options(__doc__, argv)
    seed, T = 0, 64
    epochs, d, nheads, nlayers, batch = (1, 64, 4, 1, 32) if args.short else (4, 128, 4, 1, 32)
    text = "".join(topics[k] for k in sorted(topics))
    vocab = sorted(set(text))
    V = len(vocab)
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lookup[c] for c in text), np.int32, len(text))
    cut = int(0.9 * len(ids))
    train_ids, test_ids = ids[:cut], ids[cut:]
    if args.short:
        train_ids, test_ids = train_ids[:8_000], test_ids[:2_048]
    x_train, y_train = windows(train_ids, T)
    x_test, y_test = windows(test_ids, T)
    print(f"pydoc_data.topics: {len(topics)} topics, {len(text):_} characters, {V} distinct; "
          f"training on {x_train.size:_}, held out {x_test.size:_}")

    fl.seed(seed)
    model = CharLM(V, T, d, nheads, nlayers)
    print(model)
    state = fl.setup(fl.OptimiserChain(fl.ClipGlobalNorm(1.0), fl.AdamW(3e-3, lambd=0.01)), model)
    loader = fl.DataLoader((x_train, y_train), batchsize=batch, shuffle=True, partial=False, rng=seed)

    def loss(m, x, y):  # mean negative log-likelihood per character, in nats
        return fl.losses.logitcrossentropy(m(x), fl.onehotbatch(y, range(V)))

    @jax.jit
    def nll_sum(m, x, y):
        return loss(m, x, y) * x.size

    eb = min(64, len(x_test))
    n_eval = (len(x_test) // eb) * eb                   # whole batches: one compiled program

    def held_out(m):
        """Mean nats per held-out character, in batches of `eb` windows."""
        total = sum(float(nll_sum(m, x_test[i:i + eb], y_test[i:i + eb])) for i in range(0, n_eval, eb))
        return total / (n_eval * T)

    initial = held_out(model)
    print(f"uniform over {V} characters: {math.log2(V):.2f} bits per character; "
          f"the untrained model: {initial / math.log(2):.2f} on the held-out text")
    history = {"train": [], "test": [], "steps": []}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, state, progress=not args.short)
        history["train"].append(float(losses.mean()))
        history["test"].append(held_out(model))
        history["steps"].extend(losses.tolist())
        print(f"epoch {epoch}  train loss {history['train'][-1]:.3f} nats/char  "
              f"held-out {history['test'][-1]:.3f} nats/char = {history['test'][-1] / math.log(2):.3f} bits/char  "
              f"({time.perf_counter() - t0:.0f} s)")
    bpc = history["test"][-1] / math.log(2)
    seconds = time.perf_counter() - t0

    # Sampling: a fixed window of T characters, so one compiled program serves
    # every step; the window is left-aligned while the text is shorter than T
    # (the causal mask makes the positions after it irrelevant).
    @jax.jit
    def next_char(m, window, pos, key, temperature):
        logits = m(window[None])[0, pos] / temperature
        return jax.random.categorical(key, logits)

    def sample(prompt: str, n: int, key: jax.Array, temperature: float = 0.7) -> str:
        out = [lookup[c] for c in prompt]
        for _ in range(n):
            ctx = out[-T:]
            window = jnp.asarray(ctx + [0] * (T - len(ctx)), jnp.int32)
            key, sub = jax.random.split(key)
            out.append(int(next_char(model, window, len(ctx) - 1, sub, temperature)))
        return "".join(vocab[i] for i in out)

    prompt = "The for statement is used to"
    n_new = 40 if args.short else 300
    continuation = sample(prompt, n_new, jax.random.key(seed))
    print(f"sample (temperature 0.7, jax.random.key({seed})), prompt {prompt!r}:")
    print(continuation)
    print(f"held-out bits per character {bpc:.3f} on {n_eval * T:_} characters "
          f"(uniform: {math.log2(V):.2f}), {seconds:.0f} s of training")

    if args.figures:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        steps = np.asarray(history["steps"]) / math.log(2)
        k = 20
        ax.plot(np.arange(k, len(steps) + 1) / len(loader), np.convolve(steps, np.ones(k) / k, mode="valid"),
                lw=1, label=f"training (mean of {k} steps)")
        ax.plot(np.arange(0, epochs + 1), np.asarray([initial, *history["test"]]) / math.log(2), marker="o",
                label="held out (before training, after each epoch)")
        ax.axhline(math.log2(V), color="grey", ls=":", lw=1, label=f"uniform over {V} characters")
        ax.set(xlabel="epoch", ylabel="bits per character", ylim=(0, math.log2(V) + 0.5),
               title="a character-level transformer on pydoc_data.topics")
        ax.legend(fontsize=8)
        savefig(fig, args.figures, "charlm-curves")
    return {"bpc": bpc, "initial_bpc": initial / math.log(2), "sample": continuation, **history}


if __name__ == "__main__":
    main()
