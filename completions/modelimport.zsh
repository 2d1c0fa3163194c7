#compdef modelimport

_modelimport_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _MODELIMPORT_COMPLETE=complete_zsh modelimport)
}

compdef _modelimport_completion modelimport
