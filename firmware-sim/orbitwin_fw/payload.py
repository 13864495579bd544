"""The compute payload: a weights buffer with SECDED-style per-block codes.

Each block of `block_size` bytes keeps two check values computed at load time:
the parity of all its bits and the XOR of the indices of all its 1-bits (an
extended-Hamming syndrome).  A scrub recomputes them: one flipped bit gives a
parity change and a syndrome equal to the bit's index -> corrected in place;
two flipped bits give no parity change but a non-zero syndrome -> uncorrectable.
Jobs are int8 16x16 matrix-vector products over the blocks.  MicroPython-compatible.
"""


def _tables():
    par = bytearray(256)
    xb = bytearray(256)
    for v in range(256):
        p = 0
        x = 0
        for b in range(8):
            if v & (1 << b):
                p ^= 1
                x ^= b
        par[v] = p
        xb[v] = x
    return par, xb


_PAR, _XB = _tables()
MAT_N = 16                       # jobs use MAT_N x MAT_N int8 matrices
OPS_PER_JOB = 2 * MAT_N * MAT_N  # multiply + add


class Payload:
    """Weights buffer, scrubber and workload."""

    def __init__(self, size=8192, block_size=256, seed=1):
        if size % block_size or block_size % (MAT_N * MAT_N):
            raise ValueError("size must be a multiple of block_size, block_size of 256")
        self.size = size
        self.block_size = block_size
        self.n_blocks = size // block_size
        self.seed = seed
        self.weights = bytearray(size)
        self._par = bytearray(self.n_blocks)
        self._syn = [0] * self.n_blocks
        self.bad_blocks = {}            # block -> True (uncorrectable, until reload)
        self.seu_injected = 0
        self.seu_detected = 0
        self.seu_corrected = 0
        self.seu_uncorrectable = 0
        self.last_seu_bit = -1          # bit index located by the scrub
        self._scrub_next = 0
        self._job_block = 0
        self._x = [((i * 37) & 0xFF) - 128 for i in range(MAT_N)]
        self.acc = 0
        self.load_weights()

    # ---- weights ----------------------------------------------------------
    def load_weights(self):
        """Fill the buffer from a seeded xorshift32 PRNG and compute block codes."""
        s = (self.seed * 2654435761 + 1) & 0xFFFFFFFF or 1
        w = self.weights
        for i in range(0, self.size, 4):
            s ^= (s << 13) & 0xFFFFFFFF
            s ^= s >> 17
            s ^= (s << 5) & 0xFFFFFFFF
            w[i] = s & 0xFF
            w[i + 1] = (s >> 8) & 0xFF
            w[i + 2] = (s >> 16) & 0xFF
            w[i + 3] = (s >> 24) & 0xFF
        for b in range(self.n_blocks):
            self._par[b], self._syn[b] = self.block_code(b)
        self.bad_blocks = {}

    def block_code(self, b):
        """(parity, syndrome) of block b as it is now."""
        w = self.weights
        base = b * self.block_size
        par = _PAR
        xb = _XB
        p = 0
        s = 0
        for k in range(self.block_size):
            v = w[base + k]
            if v:
                pv = par[v]
                p ^= pv
                s ^= xb[v]
                if pv:
                    s ^= k << 3
        return p, s

    def weights_ok(self):
        return not self.bad_blocks

    # ---- faults -------------------------------------------------------------
    def flip_bit(self, bit):
        """Flip one real bit of the weights buffer (an SEU)."""
        bit %= self.size * 8
        self.weights[bit >> 3] ^= 1 << (bit & 7)
        self.seu_injected += 1
        return bit

    # ---- scrub --------------------------------------------------------------
    def scrub_block(self, b=None):
        """Check one block (the next in turn if b is None); correct if possible.

        Returns 0 clean, 1 corrected, 2 uncorrectable (or already known bad).
        """
        if b is None:
            b = self._scrub_next
            self._scrub_next = (b + 1) % self.n_blocks
        if b in self.bad_blocks:
            return 2
        p, s = self.block_code(b)
        dp = p ^ self._par[b]
        ds = s ^ self._syn[b]
        if not dp and not ds:
            return 0
        self.seu_detected += 1
        if dp:                          # odd number of flips: assume one, at bit ds
            if ds < self.block_size * 8:
                self.weights[b * self.block_size + (ds >> 3)] ^= 1 << (ds & 7)
                self.seu_corrected += 1
                self.last_seu_bit = b * self.block_size * 8 + ds
                return 1
        self.seu_uncorrectable += 1
        self.bad_blocks[b] = True
        return 2

    def scrub_all(self):
        for b in range(self.n_blocks):
            self.scrub_block(b)

    # ---- workload -----------------------------------------------------------
    def job(self):
        """One job: y = W x for a 16x16 int8 block of weights; folds y into acc."""
        n = MAT_N
        base = self._job_block * n * n
        self._job_block = (self._job_block + 1) % (self.size // (n * n))
        w = self.weights
        x = self._x
        acc = self.acc
        for r in range(n):
            row = base + r * n
            y = 0
            for c in range(n):
                v = w[row + c]
                if v > 127:
                    v -= 256
                y += v * x[c]
            acc = (acc * 31 + y) & 0xFFFFFFFF
        self.acc = acc
        return acc
