"""Tables and the leaderboard site from run directories, results files and leaderboard entries."""
