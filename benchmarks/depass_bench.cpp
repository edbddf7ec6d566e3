// bench_depass_bench: timing and memory of token-level DePass against the plain forward
// pass, for one configuration per process (so that the peak RSS is per configuration).
// Prints one JSON object per line on stdout. benchmarks/compare.py drives it; see
// docs/performance.md for the methodology.
//
//   bench_depass_bench --model llama-random|PATH --n N [--threads T] [--repeats R]
//                      [--budget SECONDS] [--ids FILE] [--scores FILE] [--profile]
//   bench_depass_bench --gemm [--rows R --inner K --cols C] [--threads T] [--repeats R]
//   bench_depass_bench --model llama-random|PATH --dump-weights FILE
//   bench_depass_bench --model llama-random|PATH --n N --method ig|input-x-grad|... [--steps S]
//                      [--batch B] [--threads T] [--repeats R] [--ids FILE] [--scores FILE]
//   any of the above [--float-gemm eigen|onednn]: who computes the float products (default:
//                      oneDNN when this build links it; GemmPrecision.hpp)
//
// --method times a token-level method instead of DePass (methods/TokenAttributor.hpp; IG:
// midpoint rule from the zero baseline, --steps, default 100, --batch path points per
// record, default 0: the library's choice), the objective being the
// logit of the top-1 prediction at the last position; DePass is timed on the same ids in
// the same process for the ratio.
//
// --model llama-random builds a Llama-shaped model in memory (D=512, 8 layers, 8 heads,
// 4 kv heads, head_dim 64, MLP 1376, vocab 4096, context 2048, RoPE halves), weights
// ~ N(0, 0.02) from a fixed seed, norm gains 1. Any other value is a checkpoint path.

#include <depass/Allocator.hpp>
#include <depass/Decomposer.hpp>
#include <depass/Model.hpp>
#include <depass/Threads.hpp>
#include <depass/io/Load.hpp>
#include <depass/methods/TokenAttributor.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef DEPASS_BENCH_CXX_FLAGS
#define DEPASS_BENCH_CXX_FLAGS ""
#endif

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using MatrixF = depass::Matrix<float>;
using RowMatrixF = depass::RowMatrix<float>;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Peak resident set size of this process so far, in KiB (Linux ru_maxrss unit).
long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

/// Current resident set size in KiB, from /proc/self/statm.
long current_rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * 4;  // 4 KiB pages on x86-64 Linux
}

struct Args {
  std::string model = "llama-random";
  int n = 64;
  int threads = 1;
  int repeats = 3;
  double budget = 120;        // seconds of timed runs per measured function, after the first
  double warm_threshold = 5;  // a first run shorter than this is a discarded warm-up
  std::string ids_file, scores_file, dump_weights;
  bool profile = false, gemm = false, forward = true, depass = true;
  long gemm_rows = 65536, gemm_inner = 512, gemm_cols = 1376;
  unsigned seed = 20251;
  long work_rows = depass::DecomposeOptions{}.work_rows;  // engine work-item size (tuning)
  std::string method;  // ig | input-x-grad: time a gradient method (run_method)
  long batch = 0;      // IG path points per record (IgOptions::batch; 0: the library's choice)
  int steps = 100;     // IG steps
};

Args parse(int argc, char** argv) {
  Args a;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--model") a.model = need(i);
    else if (s == "--n") a.n = std::stoi(need(i));
    else if (s == "--threads") a.threads = std::stoi(need(i));
    else if (s == "--repeats") a.repeats = std::stoi(need(i));
    else if (s == "--budget") a.budget = std::stod(need(i));
    else if (s == "--warm-threshold") a.warm_threshold = std::stod(need(i));
    else if (s == "--ids") a.ids_file = need(i);
    else if (s == "--scores") a.scores_file = need(i);
    else if (s == "--dump-weights") a.dump_weights = need(i);
    else if (s == "--profile") a.profile = true;
    else if (s == "--no-forward") a.forward = false;
    else if (s == "--no-depass") a.depass = false;
    else if (s == "--gemm") a.gemm = true;
    else if (s == "--rows") a.gemm_rows = std::stol(need(i));
    else if (s == "--inner") a.gemm_inner = std::stol(need(i));
    else if (s == "--cols") a.gemm_cols = std::stol(need(i));
    else if (s == "--work-rows") a.work_rows = std::stol(need(i));
    else if (s == "--seed") a.seed = static_cast<unsigned>(std::stoul(need(i)));
    else if (s == "--method") a.method = need(i);
    else if (s == "--steps") a.steps = std::stoi(need(i));
    else if (s == "--batch") a.batch = std::stol(need(i));
    else if (s == "--float-gemm") {
      const std::string g = need(i);
      if (g != "eigen" && g != "onednn") throw std::invalid_argument("--float-gemm must be eigen or onednn, got " + g);
      depass::set_float_gemm(g == "eigen" ? depass::FloatGemm::Eigen : depass::FloatGemm::OneDnn);
    }
    else if (s == "--help" || s == "-h") {
      std::cout << "see the comment at the top of benchmarks/depass_bench.cpp\n";
      std::exit(0);
    } else throw std::invalid_argument("unknown argument " + s);
  }
  if (a.n < 1) throw std::invalid_argument("--n must be >= 1");
  if (a.threads < 1) throw std::invalid_argument("--threads must be >= 1");
  if (a.repeats < 1) throw std::invalid_argument("--repeats must be >= 1");
  return a;
}

// ---------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------

depass::Checkpoint<float> random_llama(unsigned seed) {
  depass::Checkpoint<float> ck;
  depass::Config& c = ck.config;
  c.architecture = "llama";
  c.dim = 512;
  c.n_layers = 8;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.head_dim = 64;
  c.hidden_dim = 1376;
  c.vocab_size = 4096;
  c.max_seq_len = 2048;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.rope_layout = depass::RopeLayout::Halves;
  c.tied_embeddings = false;

  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  auto fill = [&](RowMatrixF& m, long rows, long cols) {
    m.resize(rows, cols);
    for (long i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  };
  const long D = c.dim, Q = c.q_width(), K = c.kv_width(), I = c.hidden_dim, V = c.vocab_size;
  depass::Weights<float>& w = ck.weights;
  fill(w.token_embedding, V, D);
  w.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (auto& l : w.layers) {
    l.attention_norm = depass::Vector<float>::Ones(D);
    fill(l.wq, Q, D);
    fill(l.wk, K, D);
    fill(l.wv, K, D);
    fill(l.wo, D, Q);
    l.mlp_norm = depass::Vector<float>::Ones(D);
    fill(l.w1, I, D);
    fill(l.w3, I, D);
    fill(l.w2, D, I);
  }
  w.final_norm = depass::Vector<float>::Ones(D);
  fill(w.output, V, D);
  return ck;
}

depass::Checkpoint<float> load_model(const Args& a) {
  if (a.model == "llama-random") return random_llama(a.seed);
  return depass::io::load_checkpoint<float>(a.model);
}

/// Writes every tensor as raw little-endian float32 (row-major, PyTorch [out, in]) to
/// `path` and a JSON index (config, tensor name -> shape and element offset) to path.json.
void dump_weights(const depass::Checkpoint<float>& ck, const std::string& path) {
  std::ofstream bin(path, std::ios::binary);
  if (!bin) throw std::runtime_error("cannot write " + path);
  json index;
  const depass::Config& c = ck.config;
  index["config"] = {{"architecture", c.architecture}, {"dim", c.dim}, {"n_layers", c.n_layers},
                     {"n_heads", c.n_heads},           {"n_kv_heads", c.n_kv_heads},
                     {"head_dim", c.head_dim},         {"hidden_dim", c.hidden_dim},
                     {"vocab_size", c.vocab_size},     {"max_seq_len", c.max_seq_len},
                     {"norm_eps", c.norm_eps},         {"rope_theta", c.rope_theta},
                     {"rope_layout", depass::to_string(c.rope_layout)},
                     {"has_biases", c.has_biases()}};
  if (c.has_biases()) throw std::runtime_error("dump_weights: models with biases are not supported");
  std::size_t offset = 0;
  json tensors = json::object();
  auto put = [&](const std::string& name, const float* data, long rows, long cols) {
    bin.write(reinterpret_cast<const char*>(data),
              static_cast<std::streamsize>(sizeof(float) * static_cast<std::size_t>(rows * cols)));
    tensors[name] = {{"offset", offset}, {"shape", cols == 1 ? json::array({rows}) : json::array({rows, cols})}};
    offset += static_cast<std::size_t>(rows * cols);
  };
  auto mat = [&](const std::string& name, const RowMatrixF& m) { put(name, m.data(), m.rows(), m.cols()); };
  auto vec = [&](const std::string& name, const depass::Vector<float>& v) { put(name, v.data(), v.size(), 1); };
  const depass::Weights<float>& w = ck.weights;
  mat("token_embedding", w.token_embedding);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& L = w.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    vec(p + "attention_norm", L.attention_norm);
    mat(p + "wq", L.wq);
    mat(p + "wk", L.wk);
    mat(p + "wv", L.wv);
    mat(p + "wo", L.wo);
    vec(p + "mlp_norm", L.mlp_norm);
    mat(p + "w1", L.w1);
    mat(p + "w3", L.w3);
    mat(p + "w2", L.w2);
  }
  vec("final_norm", w.final_norm);
  mat("unembedding", w.unembedding());
  index["tensors"] = tensors;
  index["elements"] = offset;
  std::ofstream(path + ".json") << index.dump(1) << "\n";
}

/// Token ids: from a file of whitespace-separated integers (first n used), else BOS (1)
/// followed by pseudo-random ids in [3, vocab) from a fixed seed.
std::vector<int> make_ids(const Args& a, int vocab) {
  std::vector<int> ids;
  if (!a.ids_file.empty()) {
    std::ifstream in(a.ids_file);
    if (!in) throw std::runtime_error("cannot read " + a.ids_file);
    int v;
    while (static_cast<int>(ids.size()) < a.n && in >> v) ids.push_back(v);
    if (static_cast<int>(ids.size()) < a.n)
      throw std::runtime_error(a.ids_file + " holds fewer than " + std::to_string(a.n) + " ids");
    return ids;
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(3, vocab - 1);
  ids.push_back(1);
  while (static_cast<int>(ids.size()) < a.n) ids.push_back(pick(rng));
  return ids;
}

// ---------------------------------------------------------------------------------------
// FLOP model (see docs/performance.md). "dense" counts what the dense token-level
// algorithm does with M = N + 1 components (tokens + bias) at full length N each and full
// N x N mixing; "triangular" counts only what the causal structure leaves non-zero.
// ---------------------------------------------------------------------------------------

struct Flops {
  double forward = 0;           // plain forward incl. the logits
  double forward_no_logits = 0; // the real forward DePass runs alongside the components
  double depass_dense = 0;      // components (dense) + real forward without logits
  double depass_triangular = 0; // components (causal structure exploited) + real forward
};

Flops flop_model(const depass::Config& c, double N) {
  const double D = c.dim, H = c.n_heads, G = c.n_kv_heads, d = c.head_dim, I = c.hidden_dim,
               V = c.vocab_size, L = c.n_layers;
  Flops f;
  // Real forward, per layer: q,k,v projections, scores and mixing (dense N x N), Wo, MLP.
  const double layer_fwd = 2 * N * D * (H * d + 2 * G * d) + 2 * (2 * H * N * N * d) +
                           2 * N * H * d * D + 3 * (2 * N * D * I);
  f.forward_no_logits = L * layer_fwd;
  f.forward = f.forward_no_logits + 2 * N * D * V;
  // Components, dense: M*N rows through every projection; mixing per head per component.
  const double M = N + 1, rows = M * N;
  const double comp_dense = 2 * rows * D * G * d     // values
                            + 2 * H * M * N * N * d  // mixing, full N x N
                            + 2 * rows * H * d * D   // output projection
                            + 2 * rows * D * I       // MLP gate contributions
                            + 2 * rows * I * D;      // MLP down projection
  // Triangular: token component m is non-zero only at positions i >= m (N(N+1)/2 rows over
  // all token components; the bias component stays zero for these models but is counted
  // at full length), and mixing row i of component m sums j in [m, i].
  const double rows_tri = N * (N + 1) / 2 + N;
  // Multiply-adds per head and head dimension: sum_m sum_{i>=m} (i - m + 1) = N(N+1)(N+2)/6
  // for the tokens, plus N(N+1)/2 for the (causally masked) bias component.
  const double mix_tri = N * (N + 1) * (N + 2) / 6 + N * (N + 1) / 2;
  const double comp_tri = 2 * rows_tri * D * G * d + 2 * H * mix_tri * d + 2 * rows_tri * H * d * D +
                          2 * rows_tri * D * I + 2 * rows_tri * I * D;
  f.depass_dense = L * comp_dense + f.forward_no_logits;
  f.depass_triangular = L * comp_tri + f.forward_no_logits;
  return f;
}

// ---------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------

struct Timing {
  std::vector<double> samples;
  double first = 0;
  bool first_discarded = false;
  json to_json() const {
    std::vector<double> s = samples;
    std::sort(s.begin(), s.end());
    const double median = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
    return {{"min", s.front()}, {"median", median}, {"samples", samples}, {"first", first},
            {"first_discarded_as_warmup", first_discarded}};
  }
};

/// Runs fn once; if that took < warm_threshold s it was a warm-up and is discarded. Then
/// takes timed samples until `repeats` are in hand or `budget` seconds have been spent
/// (at least one sample always).
template <typename Fn>
Timing time_it(const Args& a, Fn fn) {
  Timing t;
  auto t0 = Clock::now();
  fn();
  t.first = seconds_since(t0);
  if (t.first >= a.warm_threshold) t.samples.push_back(t.first);
  else t.first_discarded = true;
  auto spent_start = Clock::now();
  while (static_cast<int>(t.samples.size()) < a.repeats) {
    if (!t.samples.empty() && seconds_since(spent_start) + t.samples.back() > a.budget) break;
    t0 = Clock::now();
    fn();
    t.samples.push_back(seconds_since(t0));
  }
  return t;
}

void set_threads(int t) { depass::set_threads(t); }  // as the CLI's --threads does

bool g_reuse_freed_memory = false;  // whether the allocator took the CLI's setting (main)

json environment_json(const Args& a) {
  json e;
  e["eigen_version"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                       "." + std::to_string(EIGEN_MINOR_VERSION);
  e["eigen_simd"] = Eigen::SimdInstructionSetsInUse();
  e["eigen_threads"] = Eigen::nbThreads();
  e["threads_requested"] = a.threads;
  e["reuse_freed_memory"] = g_reuse_freed_memory;
#ifdef _OPENMP
  e["openmp"] = true;
  e["omp_max_threads"] = omp_get_max_threads();
#else
  e["openmp"] = false;
#endif
  e["cxx_flags"] = DEPASS_BENCH_CXX_FLAGS;
#ifdef NDEBUG
  e["ndebug"] = true;
#else
  e["ndebug"] = false;
#endif
  return e;
}

// ---------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------

int run_gemm(const Args& a) {
  set_threads(a.threads);
  const long rows = a.gemm_rows, inner = a.gemm_inner, cols = a.gemm_cols;
  // The engine's shape: a column-major (M*N) x D component stack times a row-major
  // [out, in] weight, transposed.
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  MatrixF A(rows, inner);
  RowMatrixF W(cols, inner);
  for (long i = 0; i < A.size(); ++i) A.data()[i] = normal(rng);
  for (long i = 0; i < W.size(); ++i) W.data()[i] = normal(rng);
  MatrixF C(rows, cols);
  // The products the engine makes (detail::Product): Eigen's or oneDNN's (--float-gemm).
  const depass::detail::Product<float> product;
  const Timing t = time_it(a, [&] { product(A, W, C); });
  const double flops = 2.0 * rows * inner * cols;
  json out;
  out["kind"] = "gemm";
  out["impl"] = "depass-cpp";
  out["float_gemm"] = depass::to_string(depass::float_gemm());
  out["shape"] = {rows, inner, cols};
  out["threads"] = a.threads;
  out["flops"] = flops;
  out["time_s"] = t.to_json();
  out["gflops"] = flops / *std::min_element(t.samples.begin(), t.samples.end()) / 1e9;
  out["checksum"] = static_cast<double>(C(0, 0));
  out["env"] = environment_json(a);
  std::cout << out.dump() << std::endl;
  return 0;
}

/// Per-block wall time of one decomposed run, from the hook events.
json profile_run(const Args& a, const depass::Decomposer<float>& dec, const std::vector<int>& ids, const depass::Config& cfg) {
  // Events per layer, in order: attn_norm, attn_probs, attn_heads, attn_out, attn_resid,
  // ffn_norm, ffn_gate, ffn_up, ffn_act, ffn_out, layer_out. The gaps:
  //   prev -> attn_norm   : completeness check of the previous boundary + real RMSNorm
  //   attn_norm -> attn_out: real attention
  //   attn_out -> attn_resid: component propagation through attention
  //   attn_resid -> ffn_norm: completeness check + real RMSNorm
  //   ffn_norm -> ffn_out : real MLP
  //   ffn_out -> layer_out: component propagation through the MLP (gate GEMM, split, down GEMM)
  std::map<std::string, double> total;
  std::vector<json> per_layer(static_cast<std::size_t>(cfg.n_layers));
  std::string prev_name = "start";
  auto prev = Clock::now();
  const auto t0 = prev;
  depass::Hook<float> hook = [&](const depass::HookEvent<float>& e) {
    const auto now = Clock::now();
    const double dt = std::chrono::duration<double>(now - prev).count();
    const std::string name = e.name;
    std::string bucket;
    if (name == "embed") bucket = "embed";
    else if (name == "attn_norm") bucket = "check_and_norm";
    else if (name == "attn_probs" || name == "attn_heads" || name == "attn_out") bucket = "attn_real";
    else if (name == "attn_resid") bucket = "attn_components";
    else if (name == "ffn_norm") bucket = "check_and_norm";
    else if (name == "ffn_gate" || name == "ffn_up" || name == "ffn_act" || name == "ffn_out") bucket = "mlp_real";
    else if (name == "layer_out") bucket = "mlp_components";
    else bucket = "other:" + name;
    total[bucket] += dt;
    if (e.layer >= 0 && e.layer < cfg.n_layers) {
      json& l = per_layer[static_cast<std::size_t>(e.layer)];
      if (!l.is_object()) l = json::object();
      l[bucket] = l.value(bucket, 0.0) + dt;
    }
    prev_name = name;
    prev = Clock::now();  // exclude the hook's own bookkeeping
  };
  depass::DecomposeOptions options;
  options.work_rows = a.work_rows;
  auto result = dec.run(ids, depass::Initialisation<float>::tokens(), options, hook);
  const double tail = seconds_since(prev);  // last check, final norm of components, copy-out
  const double all = seconds_since(t0);
  total["tail_final_norm_and_copy_out"] = tail;
  json out;
  out["total_s"] = all;
  out["buckets_s"] = total;
  out["per_layer_s"] = per_layer;
  out["components"] = result.component_count();
  return out;
}

/// --method: one gradient method (and DePass, for the ratio) on the same ids; peak RSS is
/// measured after the gradient method, before DePass runs.
int run_method(const Args& a, const depass::Model<float>& model, const std::vector<int>& ids) {
  const long rss_baseline_peak = peak_rss_kib();
  const Eigen::Index p = static_cast<Eigen::Index>(ids.size()) - 1;
  Eigen::Index target = 0;
  model.forward(ids).row(p).maxCoeff(&target);
  const depass::Objective objective = depass::Objective::logit(p, static_cast<int>(target));
  const depass::TokenAttributor<float> methods(model);
  depass::IgOptions<float> ig;
  ig.steps = a.steps;
  ig.batch = a.batch;
  const depass::Method method = depass::parse_method(a.method);
  depass::Attribution<float> result;
  const Timing t = time_it(a, [&] { result = methods.run(method, ids, objective, ig); });
  json out;
  out["kind"] = "gradient";
  out["impl"] = "depass-cpp";
  out["method"] = a.method;
  out["steps"] = method == depass::Method::IntegratedGradients ? a.steps : 0;
  // The path points per record IG used, and how many it had in flight at once (compare.py
  // gives PyTorch that many per pass: the same rows at a time).
  const bool ig_run = method == depass::Method::IntegratedGradients;
  const depass::detail::RecordPlan plan =
      depass::detail::plan_records(a.batch, static_cast<Eigen::Index>(ids.size()));
  out["batch"] = ig_run ? plan.per_record : 0;
  out["concurrent_records"] = ig_run ? plan.concurrent : 0;
  out["in_flight"] = ig_run ? plan.in_flight() : 0;
  out["model"] = a.model == "llama-random" ? "llama-random" : a.model;
  out["n"] = a.n;
  out["threads"] = a.threads;
  out["float_gemm"] = depass::to_string(depass::float_gemm());
  out["target"] = target;
  out["time_s"] = t.to_json();
  out["completeness_gap"] = result.completeness_gap;
  out["rss_kib"] = {{"baseline_peak", rss_baseline_peak}, {"peak", peak_rss_kib()},
                    {"increment", peak_rss_kib() - rss_baseline_peak}};
  if (!a.scores_file.empty()) {
    json s;
    s["target"] = target;
    s["scores"] = std::vector<float>(result.scores.data(), result.scores.data() + result.scores.size());
    std::ofstream(a.scores_file) << s.dump() << "\n";
  }
  if (a.depass) {  // --no-depass: time the method alone (e.g. under perf)
    depass::Decomposer<float> dec(model);
    const Timing d = time_it(a, [&] { dec.run(ids, depass::Initialisation<float>::tokens()); });
    out["depass_s"] = d.to_json();
  }
  out["env"] = environment_json(a);
  std::cout << out.dump() << std::endl;
  return 0;
}

int run_model(const Args& a) {
  set_threads(a.threads);
  const auto setup0 = Clock::now();
  depass::Model<float> model(load_model(a));
  if (!a.dump_weights.empty()) {
    dump_weights({model.config(), model.weights()}, a.dump_weights);
    json out = {{"kind", "dump"}, {"model", a.model}, {"file", a.dump_weights}};
    std::cout << out.dump() << std::endl;
    return 0;
  }
  const depass::Config& cfg = model.config();
  const std::vector<int> ids = make_ids(a, cfg.vocab_size);
  if (!a.method.empty()) return run_method(a, model, ids);
  const double setup_s = seconds_since(setup0);
  const long rss_baseline_peak = peak_rss_kib();
  const long rss_baseline_current = current_rss_kib();

  json out;
  out["kind"] = "depass";
  out["impl"] = "depass-cpp";
  out["model"] = a.model == "llama-random" ? "llama-random" : a.model;
  out["n"] = a.n;
  out["threads"] = a.threads;
  out["float_gemm"] = depass::to_string(depass::float_gemm());
  out["config"] = {{"dim", cfg.dim}, {"n_layers", cfg.n_layers}, {"n_heads", cfg.n_heads},
                   {"n_kv_heads", cfg.n_kv_heads}, {"head_dim", cfg.head_dim},
                   {"hidden_dim", cfg.hidden_dim}, {"vocab_size", cfg.vocab_size}};
  out["setup_s"] = setup_s;

  const Flops f = flop_model(cfg, a.n);
  out["flops"] = {{"forward", f.forward}, {"depass_dense", f.depass_dense},
                  {"depass_triangular", f.depass_triangular}};

  if (a.forward) {
    volatile float sink = 0;
    const Timing t = time_it(a, [&] {
      const MatrixF logits = model.forward(ids);
      sink = sink + logits(0, 0);
    });
    out["forward_s"] = t.to_json();
  }
  const long rss_after_forward = peak_rss_kib();

  if (a.depass) {
    depass::Decomposer<float> dec(model);
    depass::Decomposition<float> last;
    bool have = false;
    const Timing t = time_it(a, [&] {
      // Destroy the previous result first, so that at most one result is alive at a time.
      last = depass::Decomposition<float>();
      depass::DecomposeOptions options;
      options.work_rows = a.work_rows;
      last = dec.run(ids, depass::Initialisation<float>::tokens(), options);
      have = true;
    });
    out["depass_s"] = t.to_json();
    const double best = *std::min_element(t.samples.begin(), t.samples.end());
    out["gflops_dense"] = f.depass_dense / best / 1e9;
    out["gflops_triangular"] = f.depass_triangular / best / 1e9;
    if (a.forward) {
      const double fwd = out["forward_s"]["min"].get<double>();
      out["depass_over_forward"] = best / fwd;
    }
    if (have) {
      const Eigen::Index last_pos = a.n - 1;
      const depass::Vector<float> logits = last.logits(last_pos);
      Eigen::Index target = 0;
      logits.maxCoeff(&target);
      const depass::Vector<float> scores = last.component_logits(last_pos, static_cast<int>(target));
      out["target"] = target;
      out["max_relative_residual"] = last.max_relative_residual();
      out["score_sum_minus_logit"] = static_cast<double>(scores.sum() - logits(target));
      if (!a.scores_file.empty()) {
        json s;
        s["target"] = target;
        s["logit"] = logits(target);
        s["scores"] = std::vector<float>(scores.data(), scores.data() + scores.size());
        s["ids"] = ids;
        std::ofstream(a.scores_file) << s.dump() << "\n";
      }
    }
    last = depass::Decomposition<float>();
  }
  out["rss_kib"] = {{"baseline_peak", rss_baseline_peak},
                    {"baseline_current", rss_baseline_current},
                    {"after_forward_peak", rss_after_forward},
                    {"peak", peak_rss_kib()},
                    {"increment", peak_rss_kib() - rss_baseline_peak}};

  if (a.profile) {
    depass::Decomposer<float> dec(model);
    out["profile"] = profile_run(a, dec, ids, cfg);
  }
  out["env"] = environment_json(a);
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_reuse_freed_memory = depass::reuse_freed_memory();  // as the CLI does: the harness measures what users get
  try {
    const Args a = parse(argc, argv);
    return a.gemm ? run_gemm(a) : run_model(a);
  } catch (const std::exception& e) {
    std::cerr << "bench_depass_bench: " << e.what() << "\n";
    return 1;
  }
}
