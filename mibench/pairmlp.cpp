// The joint critic's pair MLP, fused: scores[i, j] = MLP(relu(a_i + c_j)) over pairs (i, j), and
// its backward, without a (pairs, width) tensor ever leaving the cache. Built and called by
// mibench/pairmlp.py through a plain C ABI (no torch headers, so it compiles in about a second).
//
// Net: d[0..L] unit counts (d[0] = the width of a and c, d[L] = 1); layer l maps d[l] -> d[l+1]
// with W[l] (d[l+1], d[l]) row-major and bias b[l] (d[l+1]); a ReLU precedes the first layer
// (h0 = relu(a_i + c_j)) and follows every layer but the last.
//
// Pairs go through in tiles of P = NV vectors (NV = 4: 16 floats with SSE or NEON, 32 with AVX2,
// 64 with AVX-512). A tile's activations are stored unit by unit, each unit one row of P lanes,
// so a layer is "for each output unit, for each input unit, out[:] += w * in[:]" over the lanes.
// The backward recomputes each tile's activations and propagates through them. Sums over pairs
// (weight, bias and input gradients) are kept per lane and reduced at the end, in a fixed order:
// no reassociation (no -ffast-math), and a given thread count always gives the same result.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
#define PAIRMLP_VEC_BYTES 64
#elif defined(__AVX__)
#define PAIRMLP_VEC_BYTES 32
#else
#define PAIRMLP_VEC_BYTES 16
#endif

namespace {

template <typename T>
struct Vec {
  typedef T t __attribute__((vector_size(PAIRMLP_VEC_BYTES)));
  static constexpr int lanes = PAIRMLP_VEC_BYTES / sizeof(T);
  static constexpr int NV = 4;              // vectors per unit row of a tile
  static constexpr int P = NV * lanes;      // pairs per tile
};

template <typename T>
struct Net {
  int L;
  const int64_t* d;
  const T* const* W;
  const T* const* b;
};

template <typename T>
static inline typename Vec<T>::t relu(typename Vec<T>::t x) {
  const typename Vec<T>::t zero{};
  return x < zero ? zero : x;  // NaN stays NaN, as in torch.relu
}

template <typename T>
static inline T hsum(typename Vec<T>::t x) {
  T s = x[0];
  for (int i = 1; i < Vec<T>::lanes; ++i) s += x[i];
  return s;
}

// One tile's activations act[l] and gradients delta[l] (d(loss)/d(pre-activation) for l >= 1,
// d(loss)/d(a_i + c_j) for l = 0), d[l] rows of NV vectors each.
template <typename T>
struct Tile {
  typedef typename Vec<T>::t vt;
  std::vector<vt> buf;
  std::vector<vt*> act, delta;

  explicit Tile(const Net<T>& net) : act(net.L + 1), delta(net.L + 1) {
    int64_t rows = 0;
    for (int l = 0; l <= net.L; ++l) rows += net.d[l];
    buf.assign(2 * rows * Vec<T>::NV, vt{});
    vt* p = buf.data();
    for (int l = 0; l <= net.L; ++l) { act[l] = p; p += net.d[l] * Vec<T>::NV; }
    for (int l = 0; l <= net.L; ++l) { delta[l] = p; p += net.d[l] * Vec<T>::NV; }
  }
  static T* lanes(vt* rows) { return reinterpret_cast<T*>(rows); }
};

// Per-lane sums of the weight and bias gradients over the pairs of one chunk of work.
template <typename T>
struct Grads {
  typedef typename Vec<T>::t vt;
  std::vector<vt> buf;
  std::vector<vt*> W, b;

  explicit Grads(const Net<T>& net) : W(net.L), b(net.L) {
    int64_t n = 0;
    for (int l = 0; l < net.L; ++l) n += net.d[l + 1] * (net.d[l] + 1);
    buf.assign(n, vt{});
    vt* p = buf.data();
    for (int l = 0; l < net.L; ++l) {
      W[l] = p; p += net.d[l + 1] * net.d[l];
      b[l] = p; p += net.d[l + 1];
    }
  }
};

// The loops below take R units at a time (R = 2, then 1 for an odd remainder), so that each vector
// loaded from the tile serves R multiply-adds; R = 2 with NV = 4 keeps 13 vectors in registers.

// out[r] = W[r] . in + b[r] for R output units (W: R rows of K), then ReLU unless `last`.
template <typename T, int R>
static inline void dense(const T* W, int64_t K, const T* b, const typename Vec<T>::t* in,
                         typename Vec<T>::t* out, bool last) {
  typedef typename Vec<T>::t vt;
  constexpr int NV = Vec<T>::NV;
  vt acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vt{} + b[r];
  for (int64_t k = 0; k < K; ++k) {
    vt x[NV];
    for (int v = 0; v < NV; ++v) x[v] = in[k * NV + v];
    for (int r = 0; r < R; ++r) {
      const T w = W[r * K + k];
      for (int v = 0; v < NV; ++v) acc[r][v] += w * x[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) out[r * NV + v] = last ? acc[r][v] : relu<T>(acc[r][v]);
}

// For R output units with pre-activation gradients dz (R rows): gW[r][k] += dz[r] * x[k] and
// gb[r] += dz[r], summed over the tile's pairs into per-lane accumulators.
template <typename T, int R>
static inline void weight_grad(const typename Vec<T>::t* dz, const typename Vec<T>::t* x, int64_t K,
                               typename Vec<T>::t* gW, typename Vec<T>::t* gb) {
  typedef typename Vec<T>::t vt;
  constexpr int NV = Vec<T>::NV;
  vt d[R][NV];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) d[r][v] = dz[r * NV + v];
    vt s = d[r][0];
    for (int v = 1; v < NV; ++v) s += d[r][v];
    gb[r] += s;
  }
  for (int64_t k = 0; k < K; ++k) {
    vt xk[NV];
    for (int v = 0; v < NV; ++v) xk[v] = x[k * NV + v];
    for (int r = 0; r < R; ++r) {
      vt s = d[r][0] * xk[0];
      for (int v = 1; v < NV; ++v) s += d[r][v] * xk[v];
      gW[r * K + k] += s;
    }
  }
}

// For R input units (W from its column k on: O rows of K): dx[r] = sum_o W[o][k + r] dz[o], kept
// where the unit's value x[r] is > 0. Every layer's input is a ReLU output, and this is torch's
// ReLU backward (threshold_backward: zero where the output is <= 0).
template <typename T, int R>
static inline void input_grad(const T* W, int64_t K, int64_t O, const typename Vec<T>::t* dz,
                              const typename Vec<T>::t* x, typename Vec<T>::t* dx) {
  typedef typename Vec<T>::t vt;
  constexpr int NV = Vec<T>::NV;
  const vt zero{};
  vt acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = zero;
  for (int64_t o = 0; o < O; ++o) {
    vt d[NV];
    for (int v = 0; v < NV; ++v) d[v] = dz[o * NV + v];
    for (int r = 0; r < R; ++r) {
      const T w = W[o * K + r];
      for (int v = 0; v < NV; ++v) acc[r][v] += w * d[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) dx[r * NV + v] = x[r * NV + v] <= zero ? zero : acc[r][v];
}

// act[0] holds h0; fills act[1..L] (act[L]: the tile's P scores).
template <typename T>
static void forward_tile(const Net<T>& net, Tile<T>& t) {
  constexpr int NV = Vec<T>::NV;
  for (int l = 0; l < net.L; ++l) {
    const int64_t K = net.d[l], O = net.d[l + 1];
    const bool last = l + 1 == net.L;
    int64_t o = 0;
    for (; o + 2 <= O; o += 2)
      dense<T, 2>(net.W[l] + o * K, K, net.b[l] + o, t.act[l], t.act[l + 1] + o * NV, last);
    if (o < O) dense<T, 1>(net.W[l] + o * K, K, net.b[l] + o, t.act[l], t.act[l + 1] + o * NV, last);
  }
}

// delta[L] holds d(loss)/d(score) per lane (0 on padding lanes) and act[] the tile's forward; adds
// the tile's weight and bias gradients into g and leaves d(loss)/d(a_i + c_j) in delta[0].
template <typename T>
static void backward_tile(const Net<T>& net, Tile<T>& t, Grads<T>& g) {
  constexpr int NV = Vec<T>::NV;
  for (int l = net.L - 1; l >= 0; --l) {
    const int64_t K = net.d[l], O = net.d[l + 1];
    const auto* x = t.act[l];
    const auto* dz = t.delta[l + 1];
    int64_t o = 0;
    for (; o + 2 <= O; o += 2) weight_grad<T, 2>(dz + o * NV, x, K, g.W[l] + o * K, g.b[l] + o);
    if (o < O) weight_grad<T, 1>(dz + o * NV, x, K, g.W[l] + o * K, g.b[l] + o);
    int64_t k = 0;
    for (; k + 2 <= K; k += 2) input_grad<T, 2>(net.W[l] + k, K, O, dz, x + k * NV, t.delta[l] + k * NV);
    if (k < K) input_grad<T, 1>(net.W[l] + k, K, O, dz, x + k * NV, t.delta[l] + k * NV);
  }
}

// Runs f(chunk, begin, end) over [0, n) cut into `chunks` ranges (multiples of `align`); chunk 0
// runs on the calling thread, the others on threads of their own.
template <typename F>
static void split(int64_t n, int chunks, int64_t align, F f) {
  const int64_t per = ((n + chunks - 1) / chunks + align - 1) / align * align;
  std::vector<std::thread> threads;
  for (int ch = 1; ch < chunks; ++ch)
    threads.emplace_back(f, ch, std::min(n, ch * per), std::min(n, (ch + 1) * per));
  f(0, int64_t(0), std::min(n, per));
  for (auto& th : threads) th.join();
}

// ---------------------------------------------------------------- all pairs (no cols)
// Row i's tiles are columns j0 .. j0 + P - 1. c is read from cT, c transposed and zero-padded to
// whole tiles (d0 rows of nvp vectors), so loading a tile is vector adds.

template <typename T>
static std::vector<typename Vec<T>::t> transposed(const T* c, int64_t nc, int64_t d0, int64_t nvp) {
  std::vector<typename Vec<T>::t> cT(d0 * nvp, typename Vec<T>::t{});
  T* s = reinterpret_cast<T*>(cT.data());
  for (int64_t j = 0; j < nc; ++j)
    for (int64_t k = 0; k < d0; ++k) s[k * nvp * Vec<T>::lanes + j] = c[j * d0 + k];
  return cT;
}

template <typename T>
static inline void load_row(Tile<T>& t, int64_t d0, const T* ai, const typename Vec<T>::t* cT, int64_t nvp) {
  typedef typename Vec<T>::t vt;
  constexpr int NV = Vec<T>::NV;
  vt* h = t.act[0];
  for (int64_t k = 0; k < d0; ++k) {
    const vt ak = vt{} + ai[k];
    for (int v = 0; v < NV; ++v) h[k * NV + v] = relu<T>(ak + cT[k * nvp + v]);
  }
}

// Row i's score of column j sits at out[i * nc + (j - shift_i) mod nc], shift_i = i when
// `shifted` (column k of row i is then pair (i, (i + k) mod nc): the positive first, as the
// candidate layout of K = B - 1 has it), else 0. Calls f(k, p, run) for the runs of a tile's
// columns j0 .. j0 + m - 1 that are contiguous in the row (at most two): tile lanes p .. p +
// run - 1 are row places k .. k + run - 1.
template <typename F>
static inline void row_runs(int64_t j0, int64_t m, int64_t shift, int64_t nc, F f) {
  for (int64_t j = j0; j < j0 + m;) {
    const int64_t k = j >= shift ? j - shift : j - shift + nc;
    const int64_t run = std::min(j0 + m - j, nc - k);
    f(k, j - j0, run);
    j += run;
  }
}

template <typename T>
static void forward_all(const Net<T>& net, const T* a, const T* c, int64_t na, int64_t nc, bool shifted, T* out,
                        int chunks) {
  constexpr int P = Vec<T>::P;
  const int64_t d0 = net.d[0], nvp = (nc + P - 1) / P * Vec<T>::NV;
  const auto cT = transposed(c, nc, d0, nvp);
  split(na, chunks, 1, [&](int, int64_t lo, int64_t hi) {
    Tile<T> t(net);
    for (int64_t i = lo; i < hi; ++i)
      for (int64_t j0 = 0; j0 < nc; j0 += P) {
        load_row(t, d0, a + i * d0, cT.data() + j0 / Vec<T>::lanes, nvp);
        forward_tile(net, t);
        const T* scores = t.lanes(t.act[net.L]);
        row_runs(j0, std::min<int64_t>(P, nc - j0), shifted ? i : 0, nc, [&](int64_t k, int64_t p, int64_t run) {
          std::memcpy(out + i * nc + k, scores + p, sizeof(T) * run);
        });
      }
  });
}

template <typename T>
static void backward_all(const Net<T>& net, const T* a, const T* c, int64_t na, int64_t nc, bool shifted,
                         const T* grad, T* ga, T* gc, std::vector<Grads<T>>& acc) {
  typedef typename Vec<T>::t vt;
  constexpr int NV = Vec<T>::NV, P = Vec<T>::P;
  const int chunks = int(acc.size());
  const int64_t d0 = net.d[0], nvp = (nc + P - 1) / P * NV;
  const auto cT = transposed(c, nc, d0, nvp);
  std::vector<std::vector<vt>> gcT(chunks);     // per chunk: the gradient of cT
  split(na, chunks, 1, [&](int ch, int64_t lo, int64_t hi) {
    gcT[ch].assign(d0 * nvp, vt{});
    vt* gct = gcT[ch].data();
    std::vector<vt> row(d0);
    Tile<T> t(net);
    T* top = t.lanes(t.delta[net.L]);
    const vt* dh = t.delta[0];
    for (int64_t i = lo; i < hi; ++i) {
      std::fill(row.begin(), row.end(), vt{});
      for (int64_t j0 = 0; j0 < nc; j0 += P) {
        const int64_t jv = j0 / Vec<T>::lanes;
        load_row(t, d0, a + i * d0, cT.data() + jv, nvp);
        forward_tile(net, t);
        const int m = int(std::min<int64_t>(P, nc - j0));
        row_runs(j0, m, shifted ? i : 0, nc, [&](int64_t k, int64_t p, int64_t run) {
          std::memcpy(top + p, grad + i * nc + k, sizeof(T) * run);
        });
        std::fill(top + m, top + P, T(0));
        backward_tile(net, t, acc[ch]);
        for (int64_t k = 0; k < d0; ++k) {
          vt s = dh[k * NV];
          for (int v = 1; v < NV; ++v) s += dh[k * NV + v];
          row[k] += s;
          for (int v = 0; v < NV; ++v) gct[k * nvp + jv + v] += dh[k * NV + v];
        }
      }
      for (int64_t k = 0; k < d0; ++k) ga[i * d0 + k] = hsum<T>(row[k]);
    }
  });
  for (int ch = 0; ch < chunks; ++ch) {
    const T* s = reinterpret_cast<const T*>(gcT[ch].data());
    for (int64_t j = 0; j < nc; ++j)
      for (int64_t k = 0; k < d0; ++k) gc[j * d0 + k] += s[k * nvp * Vec<T>::lanes + j];
  }
}

// ---------------------------------------------------------------- given columns
// Pair n of the flat list is (n / ncols, cols[n]); a tile is P consecutive pairs.

// Loads h0 for pairs n0 .. min(n0 + P, n1) - 1, zero on the padding lanes; false on a column
// outside [0, nc).
template <typename T>
static bool load_pairs(Tile<T>& t, int64_t d0, const T* a, const T* c, int64_t nc, const int64_t* cols,
                       int64_t ncols, int64_t n0, int64_t n1) {
  constexpr int P = Vec<T>::P;
  T* h = t.lanes(t.act[0]);
  int64_t row = n0 / ncols, q = n0 % ncols;
  for (int p = 0; p < P; ++p, ++q) {
    if (q == ncols) { ++row; q = 0; }
    const int64_t n = n0 + p;
    if (n >= n1) {
      for (int64_t k = 0; k < d0; ++k) h[k * P + p] = 0;
      continue;
    }
    const int64_t j = cols[n];
    if (j < 0 || j >= nc) return false;
    const T* ar = a + row * d0;
    const T* cr = c + j * d0;
    for (int64_t k = 0; k < d0; ++k) {
      const T s = ar[k] + cr[k];
      h[k * P + p] = s < 0 ? T(0) : s;
    }
  }
  return true;
}

template <typename T>
static int forward_cols(const Net<T>& net, const T* a, const T* c, int64_t na, int64_t nc, const int64_t* cols,
                        int64_t ncols, T* out, int chunks) {
  constexpr int P = Vec<T>::P;
  std::vector<int> bad(chunks, 0);
  split(na * ncols, chunks, P, [&](int ch, int64_t lo, int64_t hi) {
    Tile<T> t(net);
    for (int64_t n0 = lo; n0 < hi; n0 += P) {
      if (!load_pairs(t, net.d[0], a, c, nc, cols, ncols, n0, hi)) { bad[ch] = 1; return; }
      forward_tile(net, t);
      std::memcpy(out + n0, t.lanes(t.act[net.L]), sizeof(T) * std::min<int64_t>(P, hi - n0));
    }
  });
  return *std::max_element(bad.begin(), bad.end());
}

// Chunk 0 adds into ga and gc; the others into copies, added at the end in chunk order.
template <typename T>
static int backward_cols(const Net<T>& net, const T* a, const T* c, int64_t na, int64_t nc, const int64_t* cols,
                         int64_t ncols, const T* grad, T* ga, T* gc, std::vector<Grads<T>>& acc) {
  constexpr int P = Vec<T>::P;
  const int chunks = int(acc.size());
  const int64_t d0 = net.d[0];
  std::vector<std::vector<T>> side(2 * chunks);
  std::vector<int> bad(chunks, 0);
  split(na * ncols, chunks, P, [&](int ch, int64_t lo, int64_t hi) {
    T* gar = ga;
    T* gcr = gc;
    if (ch > 0) {
      side[2 * ch].assign(na * d0, T(0));
      side[2 * ch + 1].assign(nc * d0, T(0));
      gar = side[2 * ch].data();
      gcr = side[2 * ch + 1].data();
    }
    Tile<T> t(net);
    T* top = t.lanes(t.delta[net.L]);
    const T* dh = t.lanes(t.delta[0]);
    for (int64_t n0 = lo; n0 < hi; n0 += P) {
      if (!load_pairs(t, d0, a, c, nc, cols, ncols, n0, hi)) { bad[ch] = 1; return; }
      forward_tile(net, t);
      const int m = int(std::min<int64_t>(P, hi - n0));
      std::memcpy(top, grad + n0, sizeof(T) * m);
      std::fill(top + m, top + P, T(0));
      backward_tile(net, t, acc[ch]);
      int64_t row = n0 / ncols, q = n0 % ncols;
      for (int p = 0; p < m; ++p, ++q) {
        if (q == ncols) { ++row; q = 0; }
        T* ar = gar + row * d0;
        T* cr = gcr + cols[n0 + p] * d0;
        for (int64_t k = 0; k < d0; ++k) {
          ar[k] += dh[k * P + p];
          cr[k] += dh[k * P + p];
        }
      }
    }
  });
  if (*std::max_element(bad.begin(), bad.end())) return 1;
  for (int ch = 1; ch < chunks; ++ch) {
    for (int64_t i = 0; i < na * d0; ++i) ga[i] += side[2 * ch][i];
    for (int64_t i = 0; i < nc * d0; ++i) gc[i] += side[2 * ch + 1][i];
  }
  return 0;
}

// ---------------------------------------------------------------- entry points

// Threads for npairs pairs: at most `threads`, with at least 16384 pairs each (a few hundred
// microseconds of work, against tens to start a thread).
static int chunks_for(int64_t npairs, int threads) {
  return int(std::max<int64_t>(1, std::min<int64_t>(threads, npairs / 16384)));
}

// out: (na, ncols) scores, ncols = nc without cols (then in the shifted layout when `shifted`,
// which needs na == nc). Returns 1 on a column index outside [0, nc).
template <typename T>
static int forward(const T* a, const T* c, int64_t na, int64_t nc, const int64_t* cols, int64_t ncols,
                   int shifted, int L, const int64_t* d, const T* const* W, const T* const* b, T* out, int threads) {
  const Net<T> net{L, d, W, b};
  const int chunks = chunks_for(na * ncols, threads);
  if (!cols) {
    forward_all(net, a, c, na, nc, shifted != 0, out, chunks);
    return 0;
  }
  return forward_cols(net, a, c, na, nc, cols, ncols, out, chunks);
}

// grad: (na, ncols) d(loss)/d(scores). ga, gc must be zero on entry; gW, gb are overwritten.
template <typename T>
static int backward(const T* a, const T* c, int64_t na, int64_t nc, const int64_t* cols, int64_t ncols,
                    int shifted, int L, const int64_t* d, const T* const* W, const T* const* b, const T* grad,
                    T* ga, T* gc, T* const* gW, T* const* gb, int threads) {
  const Net<T> net{L, d, W, b};
  std::vector<Grads<T>> acc;
  for (int ch = chunks_for(na * ncols, threads); ch > 0; --ch) acc.emplace_back(net);
  if (!cols) {
    backward_all(net, a, c, na, nc, shifted != 0, grad, ga, gc, acc);
  } else if (int err = backward_cols(net, a, c, na, nc, cols, ncols, grad, ga, gc, acc)) {
    return err;
  }
  for (int l = 0; l < L; ++l) {
    for (int64_t i = 0; i < d[l + 1] * d[l]; ++i) {
      T s = 0;
      for (const auto& g : acc) s += hsum<T>(g.W[l][i]);
      gW[l][i] = s;
    }
    for (int64_t o = 0; o < d[l + 1]; ++o) {
      T s = 0;
      for (const auto& g : acc) s += hsum<T>(g.b[l][o]);
      gb[l][o] = s;
    }
  }
  return 0;
}

}  // namespace

#define PAIRMLP_EXPORT(T, suffix)                                                                        \
  extern "C" int pairmlp_forward_##suffix(const T* a, const T* c, int64_t na, int64_t nc,              \
                                          const int64_t* cols, int64_t ncols, int shifted, int L,        \
                                          const int64_t* d, const T* const* W, const T* const* b, T* out, \
                                          int threads) {                                                 \
    return forward<T>(a, c, na, nc, cols, ncols, shifted, L, d, W, b, out, threads);                   \
  }                                                                                                      \
  extern "C" int pairmlp_backward_##suffix(const T* a, const T* c, int64_t na, int64_t nc,             \
                                           const int64_t* cols, int64_t ncols, int shifted, int L,       \
                                           const int64_t* d, const T* const* W, const T* const* b,       \
                                           const T* grad, T* ga, T* gc, T* const* gW, T* const* gb,      \
                                           int threads) {                                                \
    return backward<T>(a, c, na, nc, cols, ncols, shifted, L, d, W, b, grad, ga, gc, gW, gb, threads); \
  }                                                                                                      \
  extern "C" int pairmlp_tile_##suffix() { return Vec<T>::P; }

PAIRMLP_EXPORT(float, f32)
PAIRMLP_EXPORT(double, f64)
