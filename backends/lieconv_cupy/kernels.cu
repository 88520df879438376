// CUDA kernels of the cupy adapter (lieconv_cupy): FPS, neighbour search, fused PointConv.
// Loaded with cupy.RawModule (see adapter.py); every kernel exists as NAME_f32 and NAME_f64.
// Distances are the Euclidean groups' (T(d), Trivial(d)): sqrt(sum_e (u_e - v_e)^2) summed in
// order e = 0, 1, ... with explicitly rounded intrinsics (no FMA contraction) and correctly rounded
// sqrt, so that indices agree bit for bit with the reference (lieconv_core.adapter). Needs sm_60+
// (atomicAdd on double).

template <typename T> struct F;
template <> struct F<float> {
  static __device__ float add(float a, float b) { return __fadd_rn(a, b); }
  static __device__ float sub(float a, float b) { return __fsub_rn(a, b); }
  static __device__ float mul(float a, float b) { return __fmul_rn(a, b); }
  static __device__ float sqrt(float a) { return __fsqrt_rn(a); }
  static __device__ float inf() { return __int_as_float(0x7f800000); }
};
template <> struct F<double> {
  static __device__ double add(double a, double b) { return __dadd_rn(a, b); }
  static __device__ double sub(double a, double b) { return __dsub_rn(a, b); }
  static __device__ double mul(double a, double b) { return __dmul_rn(a, b); }
  static __device__ double sqrt(double a) { return __dsqrt_rn(a); }
  static __device__ double inf() { return __longlong_as_double(0x7ff0000000000000LL); }
};

template <typename T>
__device__ T dist(const T* a, const T* b, int E) {
  T acc = (T)0;
  for (int e = 0; e < E; ++e) {
    T d = F<T>::sub(a[e], b[e]);
    acc = F<T>::add(acc, F<T>::mul(d, d));
  }
  return F<T>::sqrt(acc);
}

template <typename T>
__device__ T quant(T d, T scale) { return floor(F<T>::add(F<T>::mul(d, scale), (T)0.5)); }

// ---- FPS: one block per cloud, all m steps; dmin lives in `scratch` (bs, n) --------------------
template <typename T>
__device__ void fps_impl(const T* x, const signed char* mask, const long long* start,
                         long long* out, T* scratch, int n, int m, int E, T scale) {
  const int b = blockIdx.x;
  const T* xb = x + (long long)b * n * E;
  const signed char* mb = mask + (long long)b * n;
  T* dmin = scratch + (long long)b * n;
  __shared__ double sval[1024];
  __shared__ long long sidx[1024];
  __shared__ long long cur;
  for (int j = threadIdx.x; j < n; j += blockDim.x) dmin[j] = mb[j] ? F<T>::inf() : -F<T>::inf();
  if (threadIdx.x == 0) cur = start[b];
  __syncthreads();
  for (int t = 0; t < m; ++t) {
    const long long c = cur;
    if (threadIdx.x == 0) out[(long long)b * m + t] = c;
    T best = -F<T>::inf();
    long long bi = n;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      T v = dmin[j];
      if (mb[j]) {
        T q = quant(dist(xb + (long long)j * E, xb + c * E, E), scale);
        v = q < v ? q : v;
        dmin[j] = v;
      }
      if (v > best || (v == best && j < bi)) { best = v; bi = j; }
    }
    sval[threadIdx.x] = (double)best;
    sidx[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        double v2 = sval[threadIdx.x + s];
        long long i2 = sidx[threadIdx.x + s];
        if (v2 > sval[threadIdx.x] || (v2 == sval[threadIdx.x] && i2 < sidx[threadIdx.x])) {
          sval[threadIdx.x] = v2;
          sidx[threadIdx.x] = i2;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) cur = sidx[0] < n ? sidx[0] : 0;
    __syncthreads();
  }
}

// ---- ball neighbourhoods: one thread per query; points visited in priority order --------------
template <typename T>
__device__ void ball_impl(const T* qe, const signed char* qmask, const T* pe,
                          const signed char* pmask, const long long* order, const T* r,
                          long long* idx, signed char* nmask, T* count, int bs, int m, int n,
                          int k, int E) {
  long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= (long long)bs * m) return;
  int b = (int)(row / m);
  const T* q = qe + row * E;
  bool qv = qmask[row] != 0;
  const T rr = r[0];
  long long* out = idx + row * k;
  long long cnt = 0;
  for (int s = 0; s < n; ++s) {  // pass 1: in-ball points, in priority order
    long long j = order[(long long)b * n + s];
    bool sel = qv && pmask[(long long)b * n + j] && dist(q, pe + ((long long)b * n + j) * E, E) < rr;
    if (sel) { if (cnt < k) out[cnt] = j; ++cnt; }
  }
  long long o = cnt;
  for (int s = 0; s < n && o < k; ++s) {  // pass 2: the rest fill the masked-off slots
    long long j = order[(long long)b * n + s];
    bool sel = qv && pmask[(long long)b * n + j] && dist(q, pe + ((long long)b * n + j) * E, E) < rr;
    if (!sel) out[o++] = j;
  }
  for (int s = 0; s < k; ++s) nmask[row * k + s] = s < cnt;
  count[row] = (T)cnt;
}

// ---- kNN: one thread per query, k rounds of "smallest (qd, index) above the previous" ---------
template <typename T>
__device__ void knn_impl(const T* qe, const signed char* qmask, const T* pe,
                         const signed char* pmask, long long* idx, signed char* nmask, int bs,
                         int m, int n, int k, int E, T scale) {
  long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= (long long)bs * m) return;
  int b = (int)(row / m);
  const T* q = qe + row * E;
  bool qv = qmask[row] != 0;
  T pk = -F<T>::inf();
  long long pi = -1;
  for (int s = 0; s < k; ++s) {
    T bk = F<T>::inf();
    long long bi = n;
    for (long long j = 0; j < n; ++j) {
      bool v = qv && pmask[(long long)b * n + j];
      T key = v ? quant(dist(q, pe + ((long long)b * n + j) * E, E), scale) : F<T>::inf();
      bool cand = key > pk || (key == pk && j > pi);
      if (cand && (key < bk || (key == bk && j < bi))) { bk = key; bi = j; }
    }
    idx[row * k + s] = bi;
    nmask[row * k + s] = qv && pmask[(long long)b * n + bi];
    pk = bk;
    pi = bi;
  }
}

// ---- fused pointconv: one block per query row; weight net per neighbour in registers ----------
#define HID 32
#define OUT 16
#define KT 64

template <typename T>
__device__ T sig(T z) { return (T)1 / ((T)1 + exp(-z)); }

template <typename T>
__device__ void wnet(const T* e, int D, const T* W1, const T* b1, const T* W2, const T* b2,
                     const T* W3, const T* b3, T* z1, T* z2, T* z3) {
  T h1[HID], h2[HID];
  for (int o = 0; o < HID; ++o) {
    T a = b1[o];
    for (int d = 0; d < D; ++d) a += e[d] * W1[d * HID + o];
    z1[o] = a;
    h1[o] = a * sig(a);
  }
  for (int o = 0; o < HID; ++o) {
    T a = b2[o];
    for (int d = 0; d < HID; ++d) a += h1[d] * W2[d * HID + o];
    z2[o] = a;
    h2[o] = a * sig(a);
  }
  for (int o = 0; o < OUT; ++o) {
    T a = b3[o];
    for (int d = 0; d < HID; ++d) a += h2[d] * W3[d * OUT + o];
    z3[o] = a;
  }
}

template <typename T>
__device__ void pc_fwd_impl(const T* emb, const T* val, const long long* idx,
                            const signed char* mask, const T* W1, const T* b1, const T* W2,
                            const T* b2, const T* W3, const T* b3, T* out, int m, int n, int K,
                            int C, int D) {
  const long long row = blockIdx.x;
  const int b = (int)(row / m);
  __shared__ T ws[KT][OUT];
  __shared__ long long js[KT];
  __shared__ bool ok[KT];
  T acc[8];  // each thread owns up to 8 of the C*OUT outputs (blockDim * 8 >= C*OUT)
  for (int u = 0; u < 8; ++u) acc[u] = 0;
  for (int k0 = 0; k0 < K; k0 += KT) {
    int kk = k0 + threadIdx.x;
    if (threadIdx.x < KT) {
      bool v = kk < K && mask[row * K + kk];
      ok[threadIdx.x] = v;
      js[threadIdx.x] = v ? idx[row * K + kk] : 0;
      if (v) {
        T z1[HID], z2[HID], z3[OUT];
        wnet(emb + (row * K + kk) * D, D, W1, b1, W2, b2, W3, b3, z1, z2, z3);
        for (int o = 0; o < OUT; ++o) ws[threadIdx.x][o] = z3[o] * sig(z3[o]);
      }
    }
    __syncthreads();
    for (int u = 0; u < 8; ++u) {
      int p = threadIdx.x + u * blockDim.x;
      if (p >= C * OUT) break;
      int c = p / OUT, o = p % OUT;
      for (int t = 0; t < KT && k0 + t < K; ++t)
        if (ok[t]) acc[u] += val[((long long)b * n + js[t]) * C + c] * ws[t][o];
    }
    __syncthreads();
  }
  for (int u = 0; u < 8; ++u) {
    int p = threadIdx.x + u * blockDim.x;
    if (p < C * OUT) out[row * C * OUT + p] = acc[u];
  }
}

// backward: one thread per (row, neighbour); gradients of the weight net by atomics into dpar =
// [dW1 (D*HID), db1, dW2 (HID*HID), db2, dW3 (HID*OUT), db3]; d(values) by atomics.
template <typename T>
__device__ void pc_bwd_impl(const T* emb, const T* val, const long long* idx,
                            const signed char* mask, const T* W1, const T* b1, const T* W2,
                            const T* b2, const T* W3, const T* b3, const T* g, T* demb, T* dval,
                            T* dpar, int bs, int m, int n, int K, int C, int D) {
  long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long long)bs * m * K) return;
  long long row = t / K;
  int b = (int)(row / m);
  if (!mask[t]) return;  // masked neighbours contribute nothing (demb stays 0)
  long long j = idx[t];
  const T* e = emb + t * D;
  T z1[HID], z2[HID], z3[OUT], dz3[OUT];
  wnet(e, D, W1, b1, W2, b2, W3, b3, z1, z2, z3);
  const T* gr = g + row * C * OUT;
  for (int o = 0; o < OUT; ++o) {
    T dw = 0;
    for (int c = 0; c < C; ++c) dw += val[((long long)b * n + j) * C + c] * gr[c * OUT + o];
    T s = sig(z3[o]);
    dz3[o] = dw * (s + z3[o] * s * (1 - s));
  }
  for (int c = 0; c < C; ++c) {
    T dv = 0;
    for (int o = 0; o < OUT; ++o) dv += z3[o] * sig(z3[o]) * gr[c * OUT + o];
    atomicAdd(dval + ((long long)b * n + j) * C + c, dv);
  }
  T* dW1 = dpar;
  T* db1 = dW1 + D * HID;
  T* dW2 = db1 + HID;
  T* db2 = dW2 + HID * HID;
  T* dW3 = db2 + HID;
  T* db3 = dW3 + HID * OUT;
  T h1[HID], h2[HID], dz2[HID], dz1[HID];
  for (int o = 0; o < HID; ++o) { h1[o] = z1[o] * sig(z1[o]); h2[o] = z2[o] * sig(z2[o]); }
  for (int o = 0; o < OUT; ++o) {
    atomicAdd(db3 + o, dz3[o]);
    for (int d = 0; d < HID; ++d) atomicAdd(dW3 + d * OUT + o, h2[d] * dz3[o]);
  }
  for (int d = 0; d < HID; ++d) {
    T a = 0;
    for (int o = 0; o < OUT; ++o) a += dz3[o] * W3[d * OUT + o];
    T s = sig(z2[d]);
    dz2[d] = a * (s + z2[d] * s * (1 - s));
  }
  for (int o = 0; o < HID; ++o) {
    atomicAdd(db2 + o, dz2[o]);
    for (int d = 0; d < HID; ++d) atomicAdd(dW2 + d * HID + o, h1[d] * dz2[o]);
  }
  for (int d = 0; d < HID; ++d) {
    T a = 0;
    for (int o = 0; o < HID; ++o) a += dz2[o] * W2[d * HID + o];
    T s = sig(z1[d]);
    dz1[d] = a * (s + z1[d] * s * (1 - s));
  }
  for (int o = 0; o < HID; ++o) {
    atomicAdd(db1 + o, dz1[o]);
    for (int d = 0; d < D; ++d) atomicAdd(dW1 + d * HID + o, e[d] * dz1[o]);
  }
  for (int d = 0; d < D; ++d) {
    T a = 0;
    for (int o = 0; o < HID; ++o) a += dz1[o] * W1[d * HID + o];
    demb[t * D + d] = a;
  }
}

#define INST(T, S)                                                                               \
  extern "C" __global__ void fps_##S(const T* x, const signed char* mask, const long long* start, \
                                     long long* out, T* scratch, int n, int m, int E, T scale) {  \
    fps_impl<T>(x, mask, start, out, scratch, n, m, E, scale);                                   \
  }                                                                                              \
  extern "C" __global__ void ball_##S(const T* qe, const signed char* qm, const T* pe,           \
                                      const signed char* pm, const long long* order, const T* r, \
                                      long long* idx, signed char* nm, T* cnt, int bs, int m,    \
                                      int n, int k, int E) {                                     \
    ball_impl<T>(qe, qm, pe, pm, order, r, idx, nm, cnt, bs, m, n, k, E);                        \
  }                                                                                              \
  extern "C" __global__ void knn_##S(const T* qe, const signed char* qm, const T* pe,            \
                                     const signed char* pm, long long* idx, signed char* nm,     \
                                     int bs, int m, int n, int k, int E, T scale) {              \
    knn_impl<T>(qe, qm, pe, pm, idx, nm, bs, m, n, k, E, scale);                                 \
  }                                                                                              \
  extern "C" __global__ void pc_fwd_##S(const T* emb, const T* val, const long long* idx,        \
                                        const signed char* mask, const T* W1, const T* b1,       \
                                        const T* W2, const T* b2, const T* W3, const T* b3,      \
                                        T* out, int m, int n, int K, int C, int D) {             \
    pc_fwd_impl<T>(emb, val, idx, mask, W1, b1, W2, b2, W3, b3, out, m, n, K, C, D);             \
  }                                                                                              \
  extern "C" __global__ void pc_bwd_##S(const T* emb, const T* val, const long long* idx,        \
                                        const signed char* mask, const T* W1, const T* b1,       \
                                        const T* W2, const T* b2, const T* W3, const T* b3,      \
                                        const T* g, T* demb, T* dval, T* dpar, int bs, int m,    \
                                        int n, int K, int C, int D) {                            \
    pc_bwd_impl<T>(emb, val, idx, mask, W1, b1, W2, b2, W3, b3, g, demb, dval, dpar, bs, m, n,  \
                   K, C, D);                                                                     \
  }

INST(float, f32)
INST(double, f64)
