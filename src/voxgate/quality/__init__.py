"""Reply quality: rule checks shared by the reply guard and `voxgate eval`."""
