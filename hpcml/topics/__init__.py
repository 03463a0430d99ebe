"""Topic models: distributed LDA by collapsed Gibbs sampling."""
