"""The registered detectors: one module each; every module here is imported by the registry.

======================  ==========  ===========================================================
name                    kinds       test
======================  ==========  ===========================================================
``ks``                  continuous  two-sample Kolmogorov-Smirnov, window vs reference
``wasserstein``         continuous  Wasserstein-1 distance with a Borell-TIS null threshold
``psi``                 continuous  population stability index on reference-quantile bins
``cusum``               continuous  two-sided CUSUM on reference normal scores (rank based)
``page_hinkley``        continuous  two-sided Page-Hinkley on winsorised raw values
``two_proportion``      boolean     two-proportion test (Fisher's exact p-value)
``bernoulli_cusum``     boolean     two-sided Bernoulli log-likelihood-ratio CUSUM
``chi_square``          categorical category distribution, exact per-category tests
``embedding_projection`` embedding  Hotelling T² on reference principal directions
``embedding_clusters``  embedding   topic-cluster shares, exact per-cluster tests
======================  ==========  ===========================================================
"""
