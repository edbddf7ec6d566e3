// Every token-level attribution method on one prompt, side by side, with the time each
// takes (docs/methods.md shows its output). The objective is the logit of the model's
// top-1 prediction after the prompt.
//
//   build/bin/bench_methods_side_by_side MODEL "PROMPT" [IG_STEPS]
//
// MODEL: any checkpoint io::load_model reads (with its tokenizer). Double precision, one
// thread (OMP_NUM_THREADS=1 for stable times); times are the fastest of three runs.

#include <depass/Decomposer.hpp>
#include <depass/io/LoadModel.hpp>
#include <depass/methods/ComponentAttributor.hpp>
#include <depass/methods/TokenAttributor.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

using namespace depass;

namespace {

/// Fastest of three runs (the first warms the caches and the allocator).
double seconds_of(const std::function<void()>& run) {
  double best = 1e300;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

/// A token's text on one line: newlines shown as \n.
std::string shown(const std::string& piece) {
  std::string out;
  for (char c : piece) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return "'" + out + "'";
}

struct Row {
  std::string name;
  Vector<double> scores;
  double seconds;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL PROMPT [IG_STEPS]\n", argv[0]);
    return 2;
  }
  const io::LoadedModel<double> loaded = io::load_model<double>(argv[1]);
  const Model<double>& model = loaded.model;
  const std::vector<int> ids = loaded.tokenizer->encode(argv[2], true);
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size()), p = N - 1;
  Eigen::Index target = 0;
  model.forward(ids).row(p).maxCoeff(&target);
  const Objective objective = Objective::logit(p, static_cast<int>(target));
  const TokenAttributor<double> methods(model);
  IgOptions<double> ig;
  if (argc > 3) ig.steps = std::stoi(argv[3]);

  std::vector<Row> rows;
  Vector<double> scores;
  rows.push_back({"depass", {}, seconds_of([&] {
                    const Decomposition<double> d = Decomposer<double>(model).run(ids, Initialisation<double>::tokens());
                    scores = d.component_logits(p, static_cast<int>(target)).head(N);
                  })});
  rows.back().scores = scores;
  for (const Method m : {Method::AttentionLast, Method::AttentionMean, Method::Rollout, Method::GradNorm,
                         Method::InputXGrad, Method::IntegratedGradients, Method::Occlusion}) {
    Attribution<double> a;
    const double t = seconds_of([&] { a = methods.run(m, ids, objective, ig); });
    rows.push_back({to_string(m), a.scores, t});
    if (m == Method::IntegratedGradients)
      std::printf("ig: %d midpoint steps from the zero baseline, completeness gap %.3g (f(x) = %.4f, f(0) = %.4f)\n",
                  ig.steps, a.completeness_gap, a.value, a.baseline_value);
  }
  // IG again from a token baseline: the first token (BOS) at every position.
  IgOptions<double> from_bos = ig;
  from_bos.baseline = model.embed(std::vector<int>(ids.size(), ids[0]));
  Attribution<double> a;
  const double t = seconds_of([&] { a = methods.integrated_gradients(ids, objective, from_bos); });
  rows.push_back({"ig (bos)", a.scores, t});
  std::printf("ig (bos): %d midpoint steps from BOS at every position, completeness gap %.3g (f(baseline) = %.4f)\n",
              ig.steps, a.completeness_gap, a.baseline_value);
  std::printf("target %lld %s at position %lld (logit)\n\n%-16s", static_cast<long long>(target),
              shown(loaded.tokenizer->piece(static_cast<int>(target))).c_str(), static_cast<long long>(p), "token");
  for (const Row& r : rows) std::printf(" %14s", r.name.c_str());
  std::printf("\n");
  for (Eigen::Index i = 0; i < N; ++i) {
    std::printf("%-16s", shown(loaded.tokenizer->piece(ids[static_cast<std::size_t>(i)])).c_str());
    for (const Row& r : rows) std::printf(" %14.4f", r.scores(i));
    std::printf("\n");
  }
  std::printf("%-16s", "seconds");
  for (const Row& r : rows) std::printf(" %14.4f", r.seconds);
  std::printf("\n\nheads (layer.head: atp, ablation), the five largest |ablation|:\n");
  const ComponentAttributor<double> components(model);
  const Attribution<double> atp = components.heads(Method::Atp, ids, objective);
  const Attribution<double> ablation = components.heads(Method::Ablation, ids, objective);
  std::vector<Eigen::Index> order(static_cast<std::size_t>(atp.scores.size()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Eigen::Index>(i);
  std::sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) {
    return std::abs(ablation.scores(a)) > std::abs(ablation.scores(b));
  });
  for (std::size_t i = 0; i < 5 && i < order.size(); ++i)
    std::printf("  %-8s %10.4f %10.4f\n", atp.labels[static_cast<std::size_t>(order[i])].c_str(), atp.scores(order[i]),
                ablation.scores(order[i]));
  return 0;
}
