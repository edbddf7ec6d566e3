#pragma once
// Head and neuron masking (issue #15): a method's scores rank the attention heads of every
// layer, or the MLP neurons of chosen layers (highest first, equal scores: lower index
// first); for each k of a grid the top-k units are zeroed (the heads' mixed values z, the
// neurons' values a, at every position, as Model::record's Ablation does), and separately
// only the bottom-k (the last k of the ranking), and the target's probability and whether
// it is still the top-1 are read at the last position. A good ranking makes the top-k
// curve fall fast and the bottom-k curve stay flat. All masked runs of a sample are
// batched through Model::record.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../Model.hpp"
#include "../detail/Batching.hpp"
#include "ComponentAttributor.hpp"
#include "FaithfulnessMetrics.hpp"

namespace depass {

struct MaskingOptions {
  std::vector<int> ks;             // k grid, ascending, each in [0, units]; empty: 0, 1, 2, 4, ..., units
  std::vector<int> neuron_layers;  // neurons: the layers ranked together, in this order; empty: every layer
  Eigen::Index batch = 0;          // masked runs per record, >= 1; 0: detail::plan_records
  ComponentOptions component;      // for the atp and ablation baselines
};

/// One sample under one method at one level.
struct MaskingSample {
  Method method = Method::DePass;
  Level level = Level::Heads;
  std::vector<double> scores;  // per unit: heads l*H + h; neurons: each layer's I neurons, layers in order
  std::vector<long> ranking;   // units, best first
  std::vector<int> ks;
  double p_clean = std::numeric_limits<double>::quiet_NaN();  // the target's probability, nothing masked
  bool top1_clean = false;                                    // whether the target is the model's top-1
  std::vector<double> top_probability;     // per k: the top-k units masked
  std::vector<double> bottom_probability;  // per k: the bottom-k units masked
  std::vector<double> top_correct;         // per k: 1 if the target is still top-1, else 0
  std::vector<double> bottom_correct;
};

/// What one masked run gave.
struct MaskedPrediction {
  double probability = 0;  // the target's
  bool correct = false;    // the target is the top-1 (ties: the lowest id wins)
};

template <typename Scalar>
class ComponentMasking {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// The model must outlive this object.
  explicit ComponentMasking(const Model<Scalar>& model, MaskingOptions options = {})
      : model_(model), options_(std::move(options)) {
    detail::check_batch(options_.batch);
    if (options_.neuron_layers.empty())
      for (int l = 0; l < model_.config().n_layers; ++l) options_.neuron_layers.push_back(l);
    for (std::size_t i = 0; i < options_.neuron_layers.size(); ++i) {
      model_.check_layer(options_.neuron_layers[i]);
      if (std::count(options_.neuron_layers.begin(), options_.neuron_layers.end(), options_.neuron_layers[i]) > 1)
        throw std::invalid_argument("neuron_layers lists layer " + std::to_string(options_.neuron_layers[i]) + " twice");
    }
  }

  const MaskingOptions& options() const { return options_; }

  /// Number of units ranked at level: L*H heads, or I neurons per layer of neuron_layers.
  long units(Level level) const {
    check_level(level);
    const Config& c = model_.config();
    if (level == Level::Heads) return static_cast<long>(c.n_layers) * c.n_heads;
    return static_cast<long>(c.hidden_dim) * static_cast<long>(options_.neuron_layers.size());
  }

  /// The k grid at level: options().ks (checked), or 0, 1, 2, 4, ... and units(level).
  std::vector<int> k_grid(Level level) const {
    const long U = units(level);
    if (options_.ks.empty()) {
      std::vector<int> ks = {0};
      for (long k = 1; k < U; k *= 2) ks.push_back(static_cast<int>(k));
      ks.push_back(static_cast<int>(U));
      return ks;
    }
    for (std::size_t i = 0; i < options_.ks.size(); ++i) {
      if (options_.ks[i] < 0 || options_.ks[i] > U)
        throw std::invalid_argument("k = " + std::to_string(options_.ks[i]) + " is out of range [0, " + std::to_string(U) +
                                    "] (units at level " + to_string(level) + ")");
      if (i > 0 && options_.ks[i] <= options_.ks[i - 1])
        throw std::invalid_argument("ks must be strictly increasing (entry " + std::to_string(i) + ")");
    }
    return options_.ks;
  }

  /// `method`'s score per unit for the target's logit at the last position.
  VectorType scores(Method method, Level level, const std::vector<int>& ids, int target) const {
    check_sample(level, ids, target);
    const Objective objective = Objective::logit(static_cast<Eigen::Index>(ids.size()) - 1, target);
    const ComponentAttributor<Scalar> attributor(model_);
    if (level == Level::Heads) return attributor.heads(method, ids, objective, options_.component).scores;
    const Eigen::Index I = model_.config().hidden_dim;
    VectorType all(units(level));
    for (std::size_t j = 0; j < options_.neuron_layers.size(); ++j)
      all.segment(static_cast<Eigen::Index>(j) * I, I) =
          attributor.neurons(method, options_.neuron_layers[j], ids, objective, options_.component).scores;
    return all;
  }

  /// One sample: `method`'s scores, then the masking curves.
  MaskingSample evaluate(Method method, Level level, const std::vector<int>& ids, int target) const {
    MaskingSample s = curves(level, ids, target, scores(method, level, ids, target));
    s.method = method;
    return s;
  }

  /// The masking curves for scores from elsewhere (one per unit).
  MaskingSample curves(Level level, const std::vector<int>& ids, int target, const Eigen::Ref<const VectorType>& scores) const {
    check_sample(level, ids, target);
    const long U = units(level);
    if (scores.size() != U)
      throw std::invalid_argument("scores have " + std::to_string(scores.size()) + " entries, expected " +
                                  std::to_string(U) + " (units at level " + to_string(level) + ")");
    MaskingSample s;
    s.level = level;
    s.scores.assign(scores.data(), scores.data() + scores.size());
    s.ranking = rank_units(scores);
    s.ks = k_grid(level);
    std::vector<std::vector<long>> masks = {{}};  // the clean run first
    for (int k : s.ks) {
      masks.emplace_back(s.ranking.begin(), s.ranking.begin() + k);
      masks.emplace_back(s.ranking.end() - k, s.ranking.end());
    }
    const std::vector<MaskedPrediction> runs = predict(level, ids, target, masks);
    s.p_clean = runs[0].probability;
    s.top1_clean = runs[0].correct;
    for (std::size_t i = 0; i < s.ks.size(); ++i) {
      const MaskedPrediction& top = runs[1 + 2 * i];
      const MaskedPrediction& bottom = runs[2 + 2 * i];
      s.top_probability.push_back(top.probability);
      s.top_correct.push_back(top.correct ? 1.0 : 0.0);
      s.bottom_probability.push_back(bottom.probability);
      s.bottom_correct.push_back(bottom.correct ? 1.0 : 0.0);
    }
    return s;
  }

  /// The target's probability and top-1 at the last position with each set of units masked
  /// (unit indices as in MaskingSample::scores), options().batch runs per record (0: the
  /// library's choice, detail::plan_records).
  std::vector<MaskedPrediction> predict(Level level, const std::vector<int>& ids, int target,
                                        const std::vector<std::vector<long>>& masks) const {
    check_sample(level, ids, target);
    const long U = units(level);
    for (const std::vector<long>& mask : masks)
      for (long u : mask)
        if (u < 0 || u >= U)
          throw std::invalid_argument("unit " + std::to_string(u) + " is out of range [0, " + std::to_string(U) + ")");
    const MatrixType x0 = model_.embed(ids);
    const Eigen::Index N = x0.rows();
    std::vector<MaskedPrediction> out(masks.size());
    const auto masked_runs = static_cast<Eigen::Index>(masks.size());
    detail::for_each_record(masked_runs, detail::plan_records(options_.batch, N),
                            [&](Eigen::Index, Eigen::Index first, Eigen::Index count) {
      Ablation ablation;
      for (Eigen::Index s = 0; s < count; ++s)
        for (long u : masks[static_cast<std::size_t>(first + s)]) ablation.cuts.push_back(cut(level, u, s));
      // Only the last position's logits are read: the last MLP runs there alone (RecordScope).
      const Tape<Scalar> tape = model_.record(x0.replicate(count, 1), N, ablation, RecordScope::at(N - 1));
      MatrixType last(count, x0.cols());
      for (Eigen::Index s = 0; s < count; ++s) last.row(s) = tape.final_normed.row(tape.final_row(s, N - 1));
      const MatrixType logits = model_.unembedding().logits(last);
      for (Eigen::Index s = 0; s < count; ++s) {
        Eigen::Index best = 0;
        logits.row(s).maxCoeff(&best);
        out[static_cast<std::size_t>(first + s)] = {faithfulness::target_probability(logits.row(s), target), best == target};
      }
    });
    return out;
  }

 private:
  /// Units by score, highest first, equal scores: lower index first; NaN refused.
  static std::vector<long> rank_units(const Eigen::Ref<const VectorType>& scores) {
    std::vector<long> order;
    for (Eigen::Index u = 0; u < scores.size(); ++u) {
      if (std::isnan(static_cast<double>(scores(u))))
        throw std::invalid_argument("score of unit " + std::to_string(u) + " is NaN");
      order.push_back(static_cast<long>(u));
    }
    std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return scores(a) > scores(b); });
    return order;
  }

  /// The zeroed columns of unit u in sequence s.
  AblationCut cut(Level level, long u, Eigen::Index sequence) const {
    const Config& c = model_.config();
    AblationCut k;
    k.sequence = sequence;
    if (level == Level::Heads) {
      k.layer = static_cast<int>(u / c.n_heads);
      k.site = Site::Attention;
      k.begin = (u % c.n_heads) * c.head_dim;
      k.count = c.head_dim;
    } else {
      k.layer = options_.neuron_layers[static_cast<std::size_t>(u / c.hidden_dim)];
      k.site = Site::Mlp;
      k.begin = u % c.hidden_dim;
      k.count = 1;
    }
    return k;
  }

  static void check_level(Level level) {
    if (level == Level::Tokens) throw std::invalid_argument("level 'tokens' is not masked here (allowed: heads, neurons)");
  }

  void check_sample(Level level, const std::vector<int>& ids, int target) const {
    check_level(level);
    model_.check_tokens(ids);
    const int V = model_.config().vocab_size;
    if (target < 0 || target >= V)
      throw std::invalid_argument("target " + std::to_string(target) + " is out of range [0, " + std::to_string(V) + ")");
  }

  const Model<Scalar>& model_;
  MaskingOptions options_;
};

}  // namespace depass
