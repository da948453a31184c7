global using Xunit;
global using ArcherIlgpu.Rl.Losses;
// The loss settings' enums are the kernels' (PolicyMath.cs), defined once; ArcherIlgpu.Rl calls them by these names.
global using LossAggregation = ArcherIlgpu.Kernels.PolicyAggregation;
global using KlAggregation = ArcherIlgpu.Kernels.PolicyKlAggregation;
global using KlEstimator = ArcherIlgpu.Kernels.PolicyKlEstimator;
global using AdvantageEstimator = ArcherIlgpu.Kernels.PolicyAdvantageEstimator;
