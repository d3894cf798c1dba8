// Batched negacyclic NTT / inverse NTT over many rows (limbs x polynomials) in one launch.
//
// Exactly the transform of the CPU oracle (csrc/ring.cpp, ntt_forward / ntt_inverse):
//   forward  = Cooley–Tukey, stages m = 1, 2, ..., N/2 with tt = N / 2m, butterfly
//              (x[2i·tt + j], x[2i·tt + j + tt]) with twiddle W[m + i] = ψ^bitrev(m + i);
//              output in bit-reversed order: slot k holds a(ψ^(2·bitrev(k)+1));
//   inverse  = Gentleman–Sande with W^-1 = ψ^-bitrev, the last stage fused with N^-1.
// Twiddle tables are the CPU RnsContext's own (RnsContext.twiddles(i)), uploaded by the
// loader, so the roots cannot disagree. Harvey lazy butterflies keep values in [0, 4q)
// (forward) / [0, 2q) (inverse) between stages; the last stage reduces fully, so results are
// bit-identical to the CPU's (the reduced residue is unique).
//
// Shared-memory decomposition ("four-step"/2-D split as in Jung et al., "Over 100x faster
// bootstrapping in FHE through memory-centric optimization with GPUs", TCHES 2021, and
// Kim et al., "Accelerating HE with GPUs", 100x): write the index x of an N = 2^logN
// transform as bits. Stage s of the forward transform pairs x with x ^ 2^(logN-1-s); a pass
// that runs the stages pairing bit positions [bit_lo, bit_lo + cnt) only mixes elements that
// agree on every other bit, so one block loads such a tile into shared memory, runs `cnt`
// stages there (twiddles fused from the table, one __syncthreads per stage) and writes back.
// N <= 2^12: one pass (the whole row in shared memory). Larger N: two passes (forward: high
// bits first, then low bits; inverse: the reverse), i.e. two global round trips per row.
// A tile holds 2^logG consecutive "high" groups x 2^cnt butterfly positions x 2^logC
// consecutive "low" columns (<= 4096 words = 32 KiB), so global accesses stay in runs of
// 2^logC (pass 1) or fully contiguous (pass 2).
//
// Grid: one block per tile; blockIdx.x = row * tiles_per_row + tile. Row r uses the prime
// row_prime[r % L] (rows of a (batch, L, N) array cycle through the L limbs).
#include "modarith.cuh"

// Global index of tile element e.
__device__ __forceinline__ u64 tile_global(u32 e, u32 hb, u32 lb, int bit_lo, int cnt, int logC, int logG) {
  const u32 C = 1u << logC, V = 1u << cnt;
  const u32 l = e & (C - 1);
  const u32 v = (e >> logC) & (V - 1);
  const u32 hg = e >> (logC + cnt);
  const u64 h = ((u64)hb << logG) | hg;
  return (h << (bit_lo + cnt)) | ((u64)v << bit_lo) | (((u64)lb << logC) | l);
}

extern "C" __global__ void ntt_fwd_pass(u64* __restrict__ a, const int* __restrict__ row_prime, int L,
                                        const u64* __restrict__ mods, const u64* __restrict__ tw,
                                        const u64* __restrict__ twp, int logN, int bit_lo, int cnt, int logC,
                                        int logG, int last) {
  extern __shared__ u64 sm[];
  const u32 E = 1u << (logG + cnt + logC);
  const u64 N = 1ull << logN;
  const u32 n_low = 1u << (bit_lo - logC);  // low chunks per row
  const u32 tiles = (u32)(N / E);
  const u64 row = blockIdx.x / tiles;
  const u32 t = blockIdx.x % tiles;
  const u32 lb = t % n_low, hb = t / n_low;
  const int pr = row_prime[row % (u64)L];
  const u64 q = mods[pr], two_q = 2 * q;
  const u64* W = tw + (u64)pr * N;
  const u64* Wp = twp + (u64)pr * N;
  u64* A = a + row * N;

  for (u32 e = threadIdx.x; e < E; e += blockDim.x) sm[e] = A[tile_global(e, hb, lb, bit_lo, cnt, logC, logG)];
  __syncthreads();

  for (int p = bit_lo + cnt - 1; p >= bit_lo; --p) {
    const int s = logN - 1 - p;        // CPU stage: m = 2^s
    const int lp = p - bit_lo + logC;  // local bit paired at this stage
    for (u32 k = threadIdx.x; k < E / 2; k += blockDim.x) {
      const u32 e0 = ((k >> lp) << (lp + 1)) | (k & ((1u << lp) - 1));
      const u32 e1 = e0 | (1u << lp);
      const u64 x0 = tile_global(e0, hb, lb, bit_lo, cnt, logC, logG);
      const u64 widx = (1ull << s) + (x0 >> (p + 1));
      const u64 w = W[widx], wp = Wp[widx];
      u64 u = sm[e0];
      u = csub(u, two_q);
      const u64 v = mul_shoup_lazy(sm[e1], w, wp, q);
      sm[e0] = u + v;
      sm[e1] = u - v + two_q;
    }
    __syncthreads();
  }

  for (u32 e = threadIdx.x; e < E; e += blockDim.x) {
    u64 v = sm[e];
    if (last) v = csub(csub(v, two_q), q);
    A[tile_global(e, hb, lb, bit_lo, cnt, logC, logG)] = v;
  }
}

// ninv/ninvp: N^-1 mod q and its Shoup companion; wl/wlp: W^-1[1]·N^-1 mod q and companion
// (the fused last stage), all per prime.
extern "C" __global__ void ntt_inv_pass(u64* __restrict__ a, const int* __restrict__ row_prime, int L,
                                        const u64* __restrict__ mods, const u64* __restrict__ itw,
                                        const u64* __restrict__ itwp, const u64* __restrict__ ninv,
                                        const u64* __restrict__ ninvp, const u64* __restrict__ wl,
                                        const u64* __restrict__ wlp, int logN, int bit_lo, int cnt, int logC,
                                        int logG) {
  extern __shared__ u64 sm[];
  const u32 E = 1u << (logG + cnt + logC);
  const u64 N = 1ull << logN;
  const u32 n_low = 1u << (bit_lo - logC);
  const u32 tiles = (u32)(N / E);
  const u64 row = blockIdx.x / tiles;
  const u32 t = blockIdx.x % tiles;
  const u32 lb = t % n_low, hb = t / n_low;
  const int pr = row_prime[row % (u64)L];
  const u64 q = mods[pr], two_q = 2 * q;
  const u64* W = itw + (u64)pr * N;
  const u64* Wp = itwp + (u64)pr * N;
  u64* A = a + row * N;

  for (u32 e = threadIdx.x; e < E; e += blockDim.x) sm[e] = A[tile_global(e, hb, lb, bit_lo, cnt, logC, logG)];
  __syncthreads();

  for (int p = bit_lo; p < bit_lo + cnt; ++p) {
    const int lp = p - bit_lo + logC;
    const bool final_stage = (p == logN - 1);
    for (u32 k = threadIdx.x; k < E / 2; k += blockDim.x) {
      const u32 e0 = ((k >> lp) << (lp + 1)) | (k & ((1u << lp) - 1));
      const u32 e1 = e0 | (1u << lp);
      const u64 u = sm[e0], v = sm[e1];
      if (final_stage) {
        sm[e0] = mul_shoup(u + v, ninv[pr], ninvp[pr], q);
        sm[e1] = mul_shoup(u - v + two_q, wl[pr], wlp[pr], q);
      } else {
        const u64 x0 = tile_global(e0, hb, lb, bit_lo, cnt, logC, logG);
        const u64 widx = (N >> (p + 1)) + (x0 >> (p + 1));
        const u64 s = u + v;
        sm[e0] = csub(s, two_q);
        sm[e1] = mul_shoup_lazy(u - v + two_q, W[widx], Wp[widx], q);
      }
    }
    __syncthreads();
  }

  for (u32 e = threadIdx.x; e < E; e += blockDim.x) A[tile_global(e, hb, lb, bit_lo, cnt, logC, logG)] = sm[e];
}

// N == 1 is not supported by the contexts (N >= 2); N == 2 has a single (final) inverse stage,
// handled by ntt_inv_pass with cnt = 1.
