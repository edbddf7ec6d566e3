// Custom initialisation: decompose a hidden state any way you like.
//
//   example_custom_initialisation [MODEL] [PROMPT]
//
// We take the hidden state before the attention of layer 1 and split it into two
// components: the context (every position but the last) and the last position itself
// ("what the model already knew about the current token after layer 0"). Any split works
// as long as the parts sum to the state -- the engine verifies that, and refuses a split
// that does not add up.

#include <depass/depass.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ExampleSupport.hpp"

int main(int argc, char** argv) {
  try {
    const std::string path = example::model_path(argc, argv);
    const std::string prompt = argc > 2 ? argv[2] : "Once upon a time there was a little girl named Lily. She loved to play with her";
    const depass::io::LoadedModel<double> loaded = depass::io::load_model<double>(path);
    const depass::Model<double>& model = loaded.model;
    const depass::Tokenizer& tokenizer = example::tokenizer_of(loaded, path);
    const std::vector<int> ids = tokenizer.encode(prompt, true);
    const Eigen::Index N = static_cast<Eigen::Index>(ids.size()), D = model.config().dim;

    // The real hidden state at the boundary "before attention 1": embed, then layer 0.
    Eigen::MatrixXd x = model.embed(ids);
    model.attention_block(0, x);
    model.mlp_block(0, x);

    depass::ComponentTensor<double> parts(2, N, D);
    parts.component(0).topRows(N - 1) = x.topRows(N - 1);  // context positions
    parts.component(1).bottomRows(1) = x.bottomRows(1);    // the last position
    const depass::Boundary at = depass::Boundary::before_attention(1);
    const depass::Decomposer<double> decomposer(model);
    const auto result =
        decomposer.run(ids, depass::Initialisation<double>::custom_components(at, parts, {"context", "last position"}));

    const Eigen::Index last = N - 1;
    Eigen::Index target = 0;
    result.logits(last).maxCoeff(&target);
    const Eigen::VectorXd scores = result.component_logits(last, static_cast<int>(target));
    std::cout << "custom split accepted (" << result.component_count() << " components incl. bias)\n";
    std::cout << "prediction '" << tokenizer.piece(static_cast<int>(target)) << "', logit "
              << result.logit(last, static_cast<int>(target)) << "\n";
    for (Eigen::Index m = 0; m < result.component_count(); ++m)
      std::printf("  %-14s %+9.4f\n", result.labels()[static_cast<std::size_t>(m)].c_str(), scores(m));

    // A split that loses part of the state is refused before anything is propagated.
    depass::ComponentTensor<double> broken = parts;
    broken.component(1).setZero();
    try {
      decomposer.run(ids, depass::Initialisation<double>::custom_components(at, broken));
      std::cerr << "a split that does not sum to the state was accepted\n";
      return 1;
    } catch (const std::invalid_argument& e) {
      std::cout << "rejected as expected: " << e.what() << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "example_custom_initialisation: " << e.what() << "\n";
    return 1;
  }
}
