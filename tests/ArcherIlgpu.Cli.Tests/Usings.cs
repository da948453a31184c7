global using Xunit;

// The end-to-end test measures its own time on 2 cores; running other classes beside it would skew that.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
