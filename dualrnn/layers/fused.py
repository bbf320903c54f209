"""Fast sequence kernels for the LSTM, Mogrifier LSTM, SCRN and weight-dropped LSTM/GRU cells
(``keras.ops`` only).

``run_sequence(cell, x, initial_state, training)`` computes exactly what
``keras.layers.RNN(cell, return_sequences=True, return_state=True)(x, initial_state, training)``
computes for a ``keras.layers.LSTMCell``, a ``MogrifierLSTMCell`` or an ``SCRNCell`` (same weights,
same dropout masks drawn from the cell's seed generator in the same order), but organised for
speed. The kernel is the one ``layers.registry`` holds for exactly the cell's class (any other
cell, a subclass included, runs its own math through ``keras.layers.RNN``):

* the input projection ``x_t W + b`` of a plain LSTM does not depend on the recurrence, so it is
  one large matrix product over the whole window (batch x window rows) before the loop;
* each time step then does one fused matrix product for the four gates (``h U``; for the
  Mogrifier cell, whose input depends on the recurrence, ``[x*, h*] [W; U]``). With recurrent
  dropout Keras draws one mask per gate (implementation 1); the four masked copies of ``h`` go
  through one batched product against the four gate blocks of ``U``;
* the Mogrifier rounds run as small products on the step's vectors (low-rank factors kept apart);
  without zigzag the rounds that gate ``h`` with the original ``x`` are computed for the whole
  window before the loop;
* the loop is a compiled loop (``keras.ops.scan``; on TensorFlow a ``tf.while_loop`` with its trip
  count, so that it also compiles with XLA), no Python per step, or with ``unroll=True`` a loop
  unrolled at trace time;
* for tanh/sigmoid cells the backward pass is written by hand (``lstm_recurrence``,
  ``mogrifier_recurrence``, ``gru_recurrence``): one product per step in the reverse loop, and the
  weight gradients as large products over all steps after it (``HANDWRITTEN_BACKWARD = False``:
  automatic differentiation of the loop).

The weights stay the cell's own variables (``kernel``, ``recurrent_kernel``, ``bias``,
``mogrifier_*``), so checkpoints and saved models are unaffected.
"""

from __future__ import annotations

from keras import ops


def _masks(cell, x0, h0):
    """The dropout masks ``keras.layers.RNN`` would draw (same calls, same generator order)."""
    dp = cell.get_dropout_mask(x0)
    rdp = cell.get_recurrent_dropout_mask(h0)
    mog_x = getattr(cell, "_mog_x_masks", None)
    mog_h = getattr(cell, "_mog_h_masks", None)
    weight = getattr(cell, "_weight_mask", None)     # WeightDropLSTMCell: this call's mask of U
    cell.reset_dropout_mask()
    cell.reset_recurrent_dropout_mask()
    return dp, rdp, mog_x, mog_h, weight


def _as_list4(mask):
    return list(mask) if isinstance(mask, (list, tuple)) else [mask] * 4


def _scan(step, init, xs, unroll):
    """The loop over the leading (time) axis of the tensors in ``xs``; the step returns
    ``(carry, (h,))``. ``unroll=True`` unrolls it at trace time (static window length)."""
    steps = ops.shape(xs[0])[0]
    if unroll and isinstance(steps, int):
        carry, outs = init, []
        for t in range(steps):
            carry, y = step(carry, [v[t] for v in xs])
            outs.append(y[0])
        return carry, ops.stack(outs, axis=0)
    carry, ys = _scan_all(step, init, xs, 1)
    return carry, ys[0]


def _gates(cell, z, c):
    units = cell.units
    act, rec = cell.activation, cell.recurrent_activation
    i = rec(z[:, :units])
    f = rec(z[:, units:2 * units])
    g = act(z[:, 2 * units:3 * units])
    o = rec(z[:, 3 * units:])
    c = f * c + i * g
    return o * act(c), c


def _gate_blocks(matrix, units):
    """``(rows, 4 * units)`` -> ``(4, rows, units)``: gate blocks i, f, c, o (batched product)."""
    rows = ops.shape(matrix)[0]
    return ops.transpose(ops.reshape(matrix, (rows, 4, units)), (1, 0, 2))


def _join_gates(z4):
    """``(4, batch, units)`` -> ``(batch, 4 * units)`` in gate order i, f, c, o."""
    return ops.concatenate([z4[0], z4[1], z4[2], z4[3]], axis=-1)


def run_sequence(cell, x, initial_state=None, training=False, unroll=False):
    """``(outputs (B, T, H), *final_states)`` of ``cell`` over ``x`` (B, T, D): the fused kernel
    registered for exactly ``type(cell)`` (``layers.registry``), else the cell's own reference math
    through ``keras.layers.RNN`` (a cell is never run by another cell's kernel)."""
    from dualrnn.layers import registry

    kernel = registry.kernel_of(cell)
    if kernel is None:
        return reference_sequence(cell, x, initial_state, training)
    return kernel(cell, x, initial_state, training=training, unroll=unroll)


def reference_sequence(cell, x, initial_state=None, training=False):
    """What ``keras.layers.RNN(cell, return_sequences=True, return_state=True)`` returns."""
    import keras

    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    return tuple(layer(x, initial_state=initial_state, training=training))


def _lstm_inputs(cell, x, initial_state, training):
    """What both LSTM kernels share: time-major inputs, states, masks and the LSTM weights."""
    dtype = cell.compute_dtype
    x = ops.cast(x, dtype)
    batch = ops.shape(x)[0]
    if initial_state is None:
        h0 = c0 = ops.zeros((batch, cell.units), dtype)
    else:
        h0, c0 = (ops.cast(s, dtype) for s in initial_state)
    dp, rdp, mog_x, mog_h, weight_mask = _masks(cell, x[:, 0, :], h0)
    use_dp = bool(training) and 0.0 < cell.dropout < 1.0 and dp is not None
    use_rdp = bool(training) and 0.0 < cell.recurrent_dropout < 1.0 and rdp is not None
    mog_drop = bool(training) and getattr(cell, "mogrifier_dropout", 0.0) > 0 and mog_x is not None
    kernel = ops.cast(ops.convert_to_tensor(cell.kernel), dtype)
    recurrent = ops.cast(ops.convert_to_tensor(cell.recurrent_kernel), dtype)
    if bool(training) and getattr(cell, "weight_dropout", 0.0) > 0 and weight_mask is not None:
        recurrent = recurrent * ops.cast(weight_mask, dtype)   # one DropConnect mask per call
    bias = ops.cast(ops.convert_to_tensor(cell.bias), dtype) if cell.use_bias else None
    xs = ops.transpose(x, (1, 0, 2))                                   # time-major (T, B, D)
    return (xs, h0, c0, kernel, recurrent, bias, dp if use_dp else None,
            rdp if use_rdp else None, (mog_x, mog_h) if mog_drop else None)


def lstm_sequence(cell, x, initial_state=None, training=False, unroll=False):
    """The fused kernel of ``keras.layers.LSTMCell``: ``(outputs, h_T, c_T)``."""
    xs, h0, c0, kernel, recurrent, bias, dp, rdp, _ = _lstm_inputs(cell, x, initial_state,
                                                                   training)
    ys, h, c = _lstm_sequence(cell, xs, h0, c0, kernel, recurrent, bias, dp, rdp, unroll)
    return ops.transpose(ys, (1, 0, 2)), h, c


def weight_drop_lstm_sequence(cell, x, initial_state=None, training=False, unroll=False):
    """The fused kernel of ``WeightDropLSTMCell``: the LSTM's, with the recurrent matrix masked
    once for the whole call (``U * M / (1 - p)``, AWD-LSTM sec. 2); ``(outputs, h_T, c_T)``."""
    return lstm_sequence(cell, x, initial_state, training=training, unroll=unroll)


def weight_drop_gru_sequence(cell, x, initial_state=None, training=False, unroll=False):
    """The fused kernel of ``WeightDropGRUCell``: ``(outputs, h_T)``.

    The input projection ``x_t W + b`` is one product over the whole window; the recurrent matrix
    is masked once for the call (``U * M / (1 - p)``); each step does one product ``h U`` (with
    ``reset_after=False`` a second one, ``(r h) U_h``) and the gates. The sigmoid/tanh GRU with
    ``reset_after=True`` (Keras's default, PyTorch's GRU, the AWD-GRU's) and no recurrent dropout
    runs ``gru_recurrence``, whose backward pass is written by hand; the other variants use
    automatic differentiation of the loop.
    """
    dtype = cell.compute_dtype
    x = ops.cast(x, dtype)
    batch, units = ops.shape(x)[0], cell.units
    if initial_state is None:
        h0 = ops.zeros((batch, units), dtype)
    else:
        h0 = ops.cast(initial_state[0] if isinstance(initial_state, (list, tuple))
                      else initial_state, dtype)
    dp, rdp, _, _, weight_mask = _masks(cell, x[:, 0, :], h0)
    dp = dp if bool(training) and 0.0 < cell.dropout < 1.0 else None
    rdp = rdp if bool(training) and 0.0 < cell.recurrent_dropout < 1.0 else None
    cast = lambda v: ops.cast(ops.convert_to_tensor(v), dtype)  # noqa: E731
    kernel, recurrent = cast(cell.kernel), cast(cell.recurrent_kernel)
    if bool(training) and cell.weight_dropout > 0 and weight_mask is not None:
        recurrent = recurrent * ops.cast(weight_mask, dtype)      # one DropConnect mask per call
    b_in, b_rec = (None if b is None else cast(b) for b in cell.biases())
    xs = ops.transpose(x, (1, 0, 2))                                   # (T, B, D)
    steps, dim = ops.shape(xs)[0], ops.shape(xs)[-1]
    if dp is None:
        proj = ops.matmul(ops.reshape(xs, (-1, dim)), kernel)
    else:
        masks = list(dp) if isinstance(dp, (list, tuple)) else [dp] * 3
        proj = ops.concatenate([ops.matmul(ops.reshape(xs * m, (-1, dim)), k)
                                for m, k in zip(masks, ops.split(kernel, 3, axis=1))], axis=-1)
    if b_in is not None:
        proj = proj + b_in
    proj = ops.reshape(proj, (steps, batch, 3 * units))
    rmasks = (None if rdp is None
              else list(rdp) if isinstance(rdp, (list, tuple)) else [rdp] * 3)
    if (HANDWRITTEN_BACKWARD and _standard_activations(cell) and cell.reset_after
            and rmasks is None and not unroll):
        b = b_rec if b_rec is not None else ops.zeros((3 * units,), dtype)
        hs, h_last = gru_recurrence(proj, h0, recurrent, b)
        return ops.transpose(hs, (1, 0, 2)), h_last
    u_z, u_r, u_h = ops.split(recurrent, 3, axis=1)
    act, rec_act = cell.activation, cell.recurrent_activation

    def step(carry, inputs):
        h = carry[0]
        xz, xr, xh = inputs[0][:, :units], inputs[0][:, units:2 * units], inputs[0][:, 2 * units:]
        hz, hr, hh = (h, h, h) if rmasks is None else (h * rmasks[0], h * rmasks[1],
                                                        h * rmasks[2])
        if rmasks is None and cell.reset_after:
            inner = ops.matmul(h, recurrent)                           # one product per step
            if b_rec is not None:
                inner = inner + b_rec
            rz, rr, rh = inner[:, :units], inner[:, units:2 * units], inner[:, 2 * units:]
        else:
            rz, rr = ops.matmul(hz, u_z), ops.matmul(hr, u_r)
            if b_rec is not None:
                rz, rr = rz + b_rec[:units], rr + b_rec[units:2 * units]
            rh = None
        z, r = rec_act(xz + rz), rec_act(xr + rr)
        if cell.reset_after:
            if rh is None:
                rh = ops.matmul(hh, u_h)
                if b_rec is not None:
                    rh = rh + b_rec[2 * units:]
            rh = r * rh
        else:
            rh = ops.matmul(r * hh, u_h)
        h = z * h + (1.0 - z) * act(xh + rh)
        return (h,), (h,)

    (h_last,), hs = _scan(step, (h0,), [proj], unroll)
    return ops.transpose(hs, (1, 0, 2)), h_last


def mogrifier_sequence(cell, x, initial_state=None, training=False, unroll=False):
    """The fused kernel of ``MogrifierLSTMCell``: ``(outputs, h_T, c_T)`` (``rounds=0``: the
    LSTM's, which is the same math)."""
    xs, h0, c0, kernel, recurrent, bias, dp, rdp, mog = _lstm_inputs(cell, x, initial_state,
                                                                     training)
    if not cell.rounds:
        ys, h, c = _lstm_sequence(cell, xs, h0, c0, kernel, recurrent, bias, dp, rdp, unroll)
        return ops.transpose(ys, (1, 0, 2)), h, c
    dtype = cell.compute_dtype
    weights = [([ops.cast(m, dtype) for m in mats], ops.cast(b, dtype))
               for mats, b in cell.mogrifier_weights]
    if HANDWRITTEN_BACKWARD and cell.zigzag and _standard_activations(cell) and not unroll:
        ys, h, c = mogrifier_recurrence(
            xs, h0, c0, ops.concatenate([kernel, recurrent], axis=0),
            bias if bias is not None else ops.zeros((4 * cell.units,), dtype), weights,
            _as_list4(dp) if dp is not None else None, _as_list4(rdp) if rdp is not None else None,
            mog[0] if mog else None, mog[1] if mog else None)
    else:
        step, seqs = _mogrifier_step(cell, xs, kernel, recurrent, bias, weights, dp, rdp, mog)
        (h, c), ys = _scan(step, (h0, c0), seqs, unroll)
    return ops.transpose(ys, (1, 0, 2)), h, c


def scrn_sequence(cell, x, initial_state=None, training=False, unroll=False):
    """The fused kernel of ``SCRNCell``: ``(outputs, h_T, s_T)``.

    The context state ``s_t = (1 - alpha) x_t B + alpha s_{t-1}`` does not depend on ``h``: the
    input products ``x_t [A | B]`` are one product over the whole window, the context states an
    elementwise loop, and ``x_t A + s_t P + b`` one more product over the window; the loop over
    ``h`` then does one product ``h_{t-1} R`` per step (automatic differentiation).
    """
    dtype = cell.compute_dtype
    x = ops.cast(x, dtype)
    batch = ops.shape(x)[0]
    if initial_state is None:
        h0 = ops.zeros((batch, cell.units), dtype)
        s0 = ops.zeros((batch, cell.context_units), dtype)
    else:
        h0, s0 = (ops.cast(s, dtype) for s in initial_state)
    dp, rdp, *_ = _masks(cell, x[:, 0, :], h0)
    xs = ops.transpose(x, (1, 0, 2))                                   # (T, B, D)
    if bool(training) and 0.0 < cell.dropout < 1.0 and dp is not None:
        xs = xs * dp
    rmask = rdp if bool(training) and 0.0 < cell.recurrent_dropout < 1.0 else None
    steps, dim = ops.shape(xs)[0], ops.shape(xs)[-1]
    cast = lambda v: ops.cast(ops.convert_to_tensor(v), dtype)  # noqa: E731
    if cell.projected_input:
        xa, xb = xs[..., :cell.units], xs[..., cell.units:]
    else:
        proj = ops.reshape(ops.matmul(ops.reshape(xs, (-1, dim)), cast(cell.kernel)),
                           (steps, batch, -1))
        xa, xb = proj[..., :cell.units], proj[..., cell.units:]
    alpha = cell.alpha_value(dtype)

    def context(carry, inputs):
        s = (1.0 - alpha) * inputs[0] + alpha * carry[0]
        return (s,), (s,)

    (s_last,), ss = _scan(context, (s0,), [xb], unroll)
    z = xa + ops.reshape(ops.matmul(ops.reshape(ss, (-1, cell.context_units)),
                                    cast(cell.context_kernel)), (steps, batch, cell.units))
    if cell.use_bias:
        z = z + cast(cell.bias)
    recurrent = cast(cell.recurrent_kernel)

    def hidden(carry, inputs):
        h = carry[0] if rmask is None else carry[0] * rmask
        h = ops.sigmoid(inputs[0] + ops.matmul(h, recurrent))
        return (h,), (h,)

    (h_last,), hs = _scan(hidden, (h0,), [z], unroll)
    ys = ops.concatenate([ss, hs], axis=-1) if cell.output_mode == "both" else hs
    return ops.transpose(ys, (1, 0, 2)), h_last, s_last


def _standard_activations(cell):
    import keras

    return (cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid)


def _lstm_sequence(cell, xs, h0, c0, kernel, recurrent, bias, dp, rdp, unroll):
    units = cell.units
    steps, batch, dim = (ops.shape(xs)[i] for i in range(3))
    flat = ops.reshape(xs, (-1, dim))
    if dp is None:                        # one GEMM over batch x window rows
        proj = ops.matmul(flat, kernel)
    elif cell.implementation == 1:        # one input mask per gate (fixed over the window)
        proj = ops.concatenate(
            [ops.matmul(ops.reshape(xs * m, (-1, dim)), k)
             for m, k in zip(_as_list4(dp), ops.split(kernel, 4, axis=1))], axis=-1)
    else:
        proj = ops.matmul(ops.reshape(xs * dp, (-1, dim)), kernel)
    if bias is not None:
        proj = proj + bias
    proj = ops.reshape(proj, (steps, batch, 4 * units))
    rmask = None if rdp is None else ops.stack(_as_list4(rdp), axis=0)       # (4, B, H)
    if HANDWRITTEN_BACKWARD and _standard_activations(cell):
        ys, h, c = lstm_recurrence(proj, h0, c0, recurrent, rmask)
        return ys, h, c
    if rmask is None:
        def step(carry, inputs):
            h, c = carry
            h, c = _gates(cell, inputs[0] + ops.matmul(h, recurrent), c)
            return (h, c), (h,)
    else:
        blocks = _gate_blocks(recurrent, units)                               # (4, H, H)

        def step(carry, inputs):
            h, c = carry
            z = inputs[0] + _join_gates(ops.matmul(ops.expand_dims(h, 0) * rmask, blocks))
            h, c = _gates(cell, z, c)
            return (h, c), (h,)
    (h, c), ys = _scan(step, (h0, c0), [proj], unroll)
    return ys, h, c


def _mogrifier_step(cell, xs, kernel, recurrent, bias, weights, dp, rdp, mog_masks):
    units = cell.units
    zigzag = cell.zigzag
    x_masks, h_masks = mog_masks if mog_masks is not None else (None, None)

    def product(v, mats, b):
        for m in mats:
            v = ops.matmul(v, m)
        return v + b

    seqs = [xs]
    if not zigzag:
        # Without zigzag every even round gates h with the original x: one product per round
        # over the whole window, before the loop.
        steps, batch, dim = (ops.shape(xs)[i] for i in range(3))
        for i, (mats, b) in enumerate(weights, start=1):
            if i % 2 == 0:
                v = xs if x_masks is None else xs * x_masks[i // 2 - 1]
                g = product(ops.reshape(v, (-1, dim)), mats, b)
                seqs.append(ops.reshape(2.0 * ops.sigmoid(g), (steps, batch, -1)))

    fused = ops.concatenate([kernel, recurrent], axis=0)                 # [W; U]
    if dp is not None or rdp is not None:
        in_masks = _as_list4(dp) if dp is not None else None
        rec_masks = _as_list4(rdp) if rdp is not None else None
        fused_blocks = _gate_blocks(fused, units)                        # (4, D + H, H)

    def step(carry, inputs):
        h_prev, c = carry
        x0, h0 = inputs[0], h_prev
        x, h = x0, h0
        even = iter(inputs[1:])
        for i, (mats, b) in enumerate(weights, start=1):
            if i % 2:
                v = h if zigzag else h0
                if h_masks is not None:
                    v = v * h_masks[(i - 1) // 2]
                x = 2.0 * ops.sigmoid(product(v, mats, b)) * x
            elif zigzag:
                v = x if x_masks is None else x * x_masks[i // 2 - 1]
                h = 2.0 * ops.sigmoid(product(v, mats, b)) * h
            else:
                h = next(even) * h
        if dp is None and rdp is None:
            z = ops.matmul(ops.concatenate([x, h], axis=-1), fused)
        else:
            xk = [x * m for m in in_masks] if in_masks is not None else [x] * 4
            hk = [h * m for m in rec_masks] if rec_masks is not None else [h] * 4
            stacked = ops.stack([ops.concatenate([a, r], axis=-1) for a, r in zip(xk, hk)], 0)
            z = _join_gates(ops.matmul(stacked, fused_blocks))
        if bias is not None:
            z = z + bias
        h, c = _gates(cell, z, c)
        return (h, c), (h,)

    return step, seqs


# The hand-written backward passes (lstm_recurrence, mogrifier_recurrence) for tanh/sigmoid cells;
# False differentiates the loop automatically (read when a model's step is traced).
HANDWRITTEN_BACKWARD = True

# Whether the fast loop is unrolled at trace time, per Keras backend (chosen by measurement with
# experiments/throughput.py; see the README's "Speed" section).
UNROLL = {"tensorflow": False, "jax": False}


def default_unroll():
    import keras

    return UNROLL.get(keras.backend.backend(), False)


def _sig_grad(s):
    return s * (1.0 - s)


def _previous(first, seq):
    """The value before each step of ``seq`` (time-major): ``first``, then ``seq[:-1]``."""
    return ops.concatenate([ops.expand_dims(first, 0), seq[:-1]], axis=0)


def _cell_update(z, c, units):
    """The sigmoid/tanh LSTM update from the gate pre-activations ``z`` (order i, f, c, o):
    returns ``(h, c, [i, f, g, o])``; the activations are what ``_cell_update_grad`` needs."""
    i = ops.sigmoid(z[:, :units])
    f = ops.sigmoid(z[:, units:2 * units])
    g = ops.tanh(z[:, 2 * units:3 * units])
    o = ops.sigmoid(z[:, 3 * units:])
    c = f * c + i * g
    return o * ops.tanh(c), c, ops.concatenate([i, f, g, o], axis=-1)


def _cell_update_grad(dh, dc_next, acts, c, c_prev, units):
    """Backward of ``_cell_update`` for one step: given dL/dh and the cell gradient from the next
    step, returns ``(dL/dz, dL/dc, f)``; ``dc * f`` is the gradient reaching ``c_prev``."""
    i, f = acts[:, :units], acts[:, units:2 * units]
    g, o = acts[:, 2 * units:3 * units], acts[:, 3 * units:]
    tc = ops.tanh(c)
    dc = dc_next + dh * o * (1.0 - tc * tc)
    dz = ops.concatenate([dc * g * _sig_grad(i), dc * c_prev * _sig_grad(f),
                          dc * i * (1.0 - g * g), dh * tc * _sig_grad(o)], axis=-1)
    return dz, dc, f


def _upstream(upstream, refs):
    """``custom_gradient``'s upstream gradients (flat or as one list), zeros where None."""
    if len(upstream) == 1 and isinstance(upstream[0], (list, tuple)):
        upstream = upstream[0]
    return [ops.zeros_like(ref) if u is None else u for u, ref in zip(upstream, refs)]


def lstm_recurrence(proj, h0, c0, recurrent, rmask=None):
    """The recurrent part of a tanh/sigmoid LSTM over a projected window, with a hand-written
    backward pass.

    ``proj`` (T, B, 4H) holds ``x_t W + b`` for every step; each step computes
    ``z = proj_t + h_{t-1} U`` (with ``rmask`` (4, B, H): ``(h_{t-1} * m_k) U_k`` per gate k) and
    the gates. Returns ``(ys (T, B, H), h_T, c_T)``. The backward pass runs the reverse loop with
    one product per step (``dz U^T``) and computes the weight gradient ``dU`` as one large product
    over all steps (``H_prev^T dZ``) instead of accumulating one small product per step, which is
    what automatic differentiation of the loop does.
    """
    units = ops.shape(h0)[-1]
    masked = rmask is not None
    if not masked:
        rmask = ops.zeros((4, 1, 1), proj.dtype)      # unused placeholder input

    @ops.custom_gradient
    def run(proj, h0, c0, recurrent, rmask):
        blocks = _gate_blocks(recurrent, units) if masked else None

        def step(carry, inputs):
            h, c = carry
            if masked:
                rec = _join_gates(ops.matmul(ops.expand_dims(h, 0) * rmask, blocks))
            else:
                rec = ops.matmul(h, recurrent)
            z = inputs[0] + rec
            h, c, acts = _cell_update(z, c, units)
            return (h, c), (h, c, acts)

        (h_last, c_last), (hs, cs, acts) = _scan_all(step, (h0, c0), [proj], 3)

        def grad(*upstream):
            d_ys, d_h, d_c = _upstream(upstream, (hs, h_last, c_last))
            c_prev, h_prev = _previous(c0, cs), _previous(h0, hs)
            rec_t = ops.transpose(recurrent)                              # (4H, H)
            blocks_t = ops.transpose(blocks, (0, 2, 1)) if masked else None

            def back(carry, inputs):
                dh_next, dc_next = carry
                dy, a, c, cp = inputs
                dz, dc, f = _cell_update_grad(dy + dh_next, dc_next, a, c, cp, units)
                if masked:
                    dz4 = ops.transpose(ops.reshape(dz, (-1, 4, units)), (1, 0, 2))
                    dhp = ops.sum(ops.matmul(dz4, blocks_t) * rmask, axis=0)
                else:
                    dhp = ops.matmul(dz, rec_t)
                return (dhp, dc * f), (dhp, dc * f, dz)

            (dh0, dc0), (_, _, dzs) = _scan_all(back, (d_h, d_c), [d_ys, acts, cs, c_prev], 3,
                                                reverse=True)
            rows = ops.reshape(h_prev, (-1, units))                       # (T*B, H)
            dz_rows = ops.reshape(dzs, (-1, 4 * units))                   # (T*B, 4H)
            if masked:
                steps = ops.shape(proj)[0]
                hm = ops.reshape(ops.expand_dims(h_prev, 1) * ops.expand_dims(rmask, 0),
                                 (steps, 4, -1, units))
                hm = ops.reshape(ops.transpose(hm, (1, 0, 2, 3)), (4, -1, units))  # (4, TB, H)
                dz4 = ops.transpose(ops.reshape(dz_rows, (-1, 4, units)), (1, 0, 2))
                d_rec = ops.matmul(ops.transpose(hm, (0, 2, 1)), dz4)        # (4, H, H)
                d_rec = ops.reshape(ops.transpose(d_rec, (1, 0, 2)), (units, 4 * units))
            else:
                d_rec = ops.matmul(ops.transpose(rows), dz_rows)
            return dzs, dh0, dc0, d_rec, ops.zeros_like(rmask)

        return (hs, h_last, c_last), grad

    return run(proj, h0, c0, recurrent, rmask)


def gru_recurrence(proj, h0, recurrent, b_rec):
    """The recurrent part of a sigmoid/tanh GRU (``reset_after=True``) over a projected window,
    with a hand-written backward pass.

    ``proj`` (T, B, 3H) holds ``x_t W + b_in`` for every step (gate order z, r, h, Keras's and
    PyTorch's); each step computes ``a = h_{t-1} U + b_rec`` and::

        z = sigmoid(proj_z + a_z),  r = sigmoid(proj_r + a_r),  n = tanh(proj_h + r * a_h)
        h_t = z * h_{t-1} + (1 - z) * n

    (Cho et al. 2014 with the reset gate applied after the product, as ``keras.layers.GRU``'s
    ``reset_after=True``). Returns ``(hs (T, B, H), h_T)``. As in ``lstm_recurrence``, the
    backward pass runs the reverse loop with one product per step (``da U^T``) and computes
    ``dU`` as one product over all steps (``H_prev^T dA``); automatic differentiation of the loop
    accumulates one (H, 3H) outer product per step instead, which measured about ten times the
    forward pass's time on one core with TensorFlow (README, "The CPU queue").
    """
    units = ops.shape(h0)[-1]

    @ops.custom_gradient
    def run(proj, h0, recurrent, b_rec):
        def step(carry, inputs):
            h = carry[0]
            p, a = inputs[0], ops.matmul(h, recurrent) + b_rec
            z = ops.sigmoid(p[:, :units] + a[:, :units])
            r = ops.sigmoid(p[:, units:2 * units] + a[:, units:2 * units])
            a_h = a[:, 2 * units:]
            n = ops.tanh(p[:, 2 * units:] + r * a_h)
            h = z * h + (1.0 - z) * n
            return (h,), (h, ops.concatenate([z, r, n, a_h], axis=-1))

        (h_last,), (hs, acts) = _scan_all(step, (h0,), [proj], 2)

        def grad(*upstream):
            d_ys, d_h = _upstream(upstream, (hs, h_last))
            h_prev = _previous(h0, hs)
            rec_t = ops.transpose(recurrent)                              # (3H, H)

            def back(carry, inputs):
                dh = carry[0] + inputs[0]
                act, hp = inputs[1], inputs[2]
                z, r = act[:, :units], act[:, units:2 * units]
                n, a_h = act[:, 2 * units:3 * units], act[:, 3 * units:]
                dn = dh * (1.0 - z) * (1.0 - n * n)          # through tanh: d(proj_h + r a_h)
                dz = dh * (hp - n) * _sig_grad(z)
                dr = dn * a_h * _sig_grad(r)
                d_proj = ops.concatenate([dz, dr, dn], axis=-1)
                d_a = ops.concatenate([dz, dr, dn * r], axis=-1)
                return (dh * z + ops.matmul(d_a, rec_t),), (d_proj, d_a)

            (dh0,), (d_proj, d_a) = _scan_all(back, (d_h,), [d_ys, acts, h_prev], 2,
                                              reverse=True)
            d_rows = ops.reshape(d_a, (-1, 3 * units))                   # (T*B, 3H)
            d_rec = ops.matmul(ops.transpose(ops.reshape(h_prev, (-1, units))), d_rows)
            return d_proj, dh0, d_rec, ops.sum(d_rows, axis=0)

        return (hs, h_last), grad

    return run(proj, h0, recurrent, b_rec)


def _scan_all(step, init, xs, n_out, reverse=False):
    """``ops.scan`` of ``step`` (which returns ``(carry, n_out outputs)``) over the leading axis of
    ``xs``. On TensorFlow a ``tf.while_loop`` with its iteration count set, so that it also compiles
    with XLA and its outputs need not be shaped like the carry."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return ops.scan(step, init, xs, reverse=reverse)
    import tensorflow as tf

    steps = xs[0].shape[0]
    if steps is None:
        steps = tf.shape(xs[0])[0]
    arrays = [tf.TensorArray(xs[0].dtype, size=steps) for _ in range(n_out)]

    def body(t, carry, arrays):
        carry, ys = step(carry, [x[t] for x in xs])
        return (t - 1 if reverse else t + 1, carry,
                [a.write(t, y) for a, y in zip(arrays, ys)])

    _, carry, arrays = tf.while_loop(
        lambda t, *_: t >= 0 if reverse else t < steps, body,
        (steps - 1 if reverse else 0, tuple(init), arrays), maximum_iterations=steps)
    return carry, tuple(a.stack() for a in arrays)


def mogrifier_recurrence(xs, h0, c0, fused, bias, rounds, in_masks=None, rec_masks=None,
                         x_masks=None, h_masks=None):
    """A zigzag Mogrifier LSTM (tanh/sigmoid) over a window, with a hand-written backward pass.

    ``xs`` (T, B, D) time-major inputs; ``fused`` (D + H, 4H) is ``[W; U]``; ``rounds`` a list of
    ``(matrices, bias)`` (one matrix, or the two low-rank factors); ``in_masks``/``rec_masks``
    lists of four (B, D)/(B, H) masks (Keras's per-gate dropout) or None; ``x_masks``/``h_masks``
    the Mogrifier-dropout masks of the even/odd rounds or None. Returns ``(ys, h_T, c_T)``.

    The backward loop recomputes each step's (small) Mogrifier rounds and does one product per
    step against ``[W; U]``; the gradients of ``[W; U]`` and of the round matrices are large
    products over all steps after the loop instead of per-step accumulations.
    """
    units = ops.shape(h0)[-1]
    dim = ops.shape(xs)[-1]
    masked = in_masks is not None or rec_masks is not None
    shapes = [len(m) for m, _ in rounds]
    ones_x, ones_h = ops.ones_like(xs[0]), ops.ones_like(h0)
    gate_in = ops.stack(in_masks if in_masks is not None else [ones_x] * 4, 0)
    gate_rec = ops.stack(rec_masks if rec_masks is not None else [ones_h] * 4, 0)
    mog_x = list(x_masks) if x_masks else []
    mog_h = list(h_masks) if h_masks else []
    flat_rounds = [t for mats, b in rounds for t in (*mats, b)]
    n_fixed = 7

    @ops.custom_gradient
    def run(*args):
        xs, h0, c0, fused, bias, gate_in, gate_rec = args[:n_fixed]
        mx = list(args[n_fixed:n_fixed + len(mog_x)])
        mh = list(args[n_fixed + len(mog_x):n_fixed + len(mog_x) + len(mog_h)])
        flat = list(args[n_fixed + len(mog_x) + len(mog_h):])
        weights, k = [], 0
        for n in shapes:
            weights.append((flat[k:k + n], flat[k + n]))
            k += n + 1
        blocks = _gate_blocks(fused, units) if masked else None

        def mogrify(x, h):
            trace = []
            for i, (mats, b) in enumerate(weights, start=1):
                if i % 2:
                    v = h * mh[(i - 1) // 2] if mh else h
                else:
                    v = x * mx[i // 2 - 1] if mx else x
                a = ops.matmul(v, mats[0]) if len(mats) == 2 else None
                s = ops.sigmoid(ops.matmul(v if a is None else a, mats[-1]) + b)
                if i % 2:
                    trace.append((v, a, s, x))
                    x = 2.0 * s * x
                else:
                    trace.append((v, a, s, h))
                    h = 2.0 * s * h
            return x, h, trace

        def gate_input(x, h):
            if not masked:
                return ops.matmul(ops.concatenate([x, h], axis=-1), fused) + bias
            u = ops.concatenate([ops.expand_dims(x, 0) * gate_in,
                                 ops.expand_dims(h, 0) * gate_rec], axis=-1)   # (4, B, D + H)
            return _join_gates(ops.matmul(u, blocks)) + bias

        def step(carry, inputs):
            h, c = carry
            x, h, _ = mogrify(inputs[0], h)
            z = gate_input(x, h)
            h, c, acts = _cell_update(z, c, units)
            return (h, c), (h, c, acts)

        (h_last, c_last), (hs, cs, acts) = _scan_all(step, (h0, c0), [xs], 3)

        def grad(*upstream):
            d_ys, d_h, d_c = _upstream(upstream, (hs, h_last, c_last))
            c_prev, h_prev = _previous(c0, cs), _previous(h0, hs)
            fused_t = ops.transpose(fused)
            blocks_t = ops.transpose(blocks, (0, 2, 1)) if masked else None

            def back(carry, inputs):
                dh_next, dc_next = carry
                dy, a, c, cp, x_in, hp = inputs
                x, h, trace = mogrify(x_in, hp)
                dz, dc, f = _cell_update_grad(dy + dh_next, dc_next, a, c, cp, units)
                if masked:
                    dz4 = ops.transpose(ops.reshape(dz, (-1, 4, units)), (1, 0, 2))
                    du = ops.matmul(dz4, blocks_t)                          # (4, B, D + H)
                    gx = ops.sum(du[:, :, :dim] * gate_in, axis=0)
                    gh = ops.sum(du[:, :, dim:] * gate_rec, axis=0)
                else:
                    du = ops.matmul(dz, fused_t)
                    gx, gh = du[:, :dim], du[:, dim:]
                outs = [dz, x, h]
                for r in range(len(weights), 0, -1):
                    (mats, _), (v, av, s, old) = weights[r - 1], trace[r - 1]
                    up = gx if r % 2 else gh
                    d_old = up * 2.0 * s
                    dp = up * 2.0 * old * _sig_grad(s)
                    if av is None:
                        dv = ops.matmul(dp, ops.transpose(mats[0]))
                        outs += [v, dp]
                    else:
                        da = ops.matmul(dp, ops.transpose(mats[1]))
                        dv = ops.matmul(da, ops.transpose(mats[0]))
                        outs += [v, av, dp, da]
                    if r % 2:
                        gx = d_old
                        gh = gh + (dv * mh[(r - 1) // 2] if mh else dv)
                    else:
                        gh = d_old
                        gx = gx + (dv * mx[r // 2 - 1] if mx else dv)
                return (gh, dc * f), (gx, *outs)

            n_out = 4 + sum(2 if n == 1 else 4 for n in shapes)
            (dh0, dc0), outs = _scan_all(back, (d_h, d_c), [d_ys, acts, cs, c_prev, xs, h_prev],
                                         n_out, reverse=True)
            dxs, dzs, x_star, h_star = outs[:4]
            rows = lambda t: ops.reshape(t, (-1, ops.shape(t)[-1]))  # noqa: E731
            dz_rows = rows(dzs)
            if masked:
                u = ops.concatenate([ops.expand_dims(rows(x_star), 0) * _tile(gate_in, xs),
                                     ops.expand_dims(rows(h_star), 0) * _tile(gate_rec, xs)],
                                    axis=-1)                                 # (4, TB, D + H)
                dz4 = ops.transpose(ops.reshape(dz_rows, (-1, 4, units)), (1, 0, 2))
                d_fused = ops.matmul(ops.transpose(u, (0, 2, 1)), dz4)          # (4, D + H, H)
                d_fused = ops.reshape(ops.transpose(d_fused, (1, 0, 2)), (dim + units, 4 * units))
            else:
                u = ops.concatenate([rows(x_star), rows(h_star)], axis=-1)
                d_fused = ops.matmul(ops.transpose(u), dz_rows)
            d_bias = ops.sum(dz_rows, axis=0)
            d_rounds, k = [], 4
            per_round = []
            for n in reversed(shapes):          # the backward loop emitted rounds last to first
                m = 2 if n == 1 else 4
                per_round.append(outs[k:k + m])
                k += m
            per_round.reverse()
            for (mats, _), got in zip(weights, per_round):
                if len(mats) == 1:
                    v, dp = (rows(t) for t in got)
                    d_rounds += [ops.matmul(ops.transpose(v), dp), ops.sum(dp, axis=0)]
                else:
                    v, av, dp, da = (rows(t) for t in got)
                    d_rounds += [ops.matmul(ops.transpose(v), da),
                                 ops.matmul(ops.transpose(av), dp), ops.sum(dp, axis=0)]
            zeros = [ops.zeros_like(t) for t in (gate_in, gate_rec, *mx, *mh)]
            return (dxs, dh0, dc0, d_fused, d_bias, *zeros, *d_rounds)

        return (hs, h_last, c_last), grad

    return run(xs, h0, c0, fused, bias, gate_in, gate_rec, *mog_x, *mog_h, *flat_rounds)


def _tile(mask4, xs):
    """(4, B, F) per-stream masks -> (4, T * B, F), the rows of a time-major window."""
    steps = ops.shape(xs)[0]
    return ops.reshape(ops.tile(ops.expand_dims(mask4, 1), (1, steps, 1, 1)),
                       (4, -1, ops.shape(mask4)[-1]))
