// Head ranking: which attention heads carry the prediction?
//
//   example_head_ranking [MODEL] [PROMPT]
//
// For every layer the attention output is split into one component per head (head-level
// DePass); each head's share of the predicted token's logit ranks it. Per layer, the
// residual input, the heads and the bias add up to the logit.

#include <depass/depass.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "ExampleSupport.hpp"

int main(int argc, char** argv) {
  try {
    const std::string path = example::model_path(argc, argv);
    const std::string prompt =
        argc > 2 ? argv[2] : "Once upon a time there was a little girl named Lily. She loved to play with her";
    const depass::io::LoadedModel<double> loaded = depass::io::load_model<double>(path);
    const depass::Model<double>& model = loaded.model;
    const depass::Tokenizer& tokenizer = example::tokenizer_of(loaded, path);
    const std::vector<int> ids = tokenizer.encode(prompt, true);
    const depass::Config& cfg = model.config();

    const Eigen::Index last = static_cast<Eigen::Index>(ids.size()) - 1;
    Eigen::Index target = 0;
    model.forward(ids).row(last).maxCoeff(&target);
    std::cout << "target: '" << tokenizer.piece(static_cast<int>(target)) << "' after \"" << prompt << "\"\n";

    const depass::Decomposer<double> decomposer(model);
    std::vector<std::tuple<double, int, int>> ranked;  // (score, layer, head)
    for (int layer = 0; layer < cfg.n_layers; ++layer) {
      const auto result = decomposer.run(ids, depass::Initialisation<double>::heads(layer));
      const Eigen::VectorXd scores = result.component_logits(last, static_cast<int>(target));
      // Components: 0 = residual input, 1..H = heads, last = bias.
      const double check = scores.sum() - result.logit(last, static_cast<int>(target));
      if (std::abs(check) > 1e-8) throw std::runtime_error("layer " + std::to_string(layer) + " is not lossless");
      for (int h = 0; h < cfg.n_heads; ++h) ranked.emplace_back(scores(1 + h), layer, h);
    }
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
    std::cout << "ranked " << ranked.size() << " heads (" << cfg.n_layers << " layers x " << cfg.n_heads << ")\n";
    std::cout << "top heads by contribution to the target logit:\n";
    for (std::size_t r = 0; r < std::min<std::size_t>(5, ranked.size()); ++r)
      std::printf("  %zu. layer %d head %d  %+8.4f\n", r + 1, std::get<1>(ranked[r]), std::get<2>(ranked[r]),
                  std::get<0>(ranked[r]));
    std::printf("most negative: layer %d head %d  %+8.4f\n", std::get<1>(ranked.back()), std::get<2>(ranked.back()),
                std::get<0>(ranked.back()));
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "example_head_ranking: " << e.what() << "\n";
    return 1;
  }
}
