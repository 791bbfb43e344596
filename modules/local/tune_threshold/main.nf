process TUNE_THRESHOLD {
    tag "${meta.id}"
    label 'process_low'
    // tune-threshold writes et_threshold into each model.json: work on copies, never on the inputs
    stageInMode 'copy'

    input:
    // the out-of-fold predictions, the references (each in its own numbered folder) and the CSV
    // naming each case's reference and its label convention
    tuple val(meta), path(preds, stageAs: 'pred/*'), path(gts, stageAs: 'gt/f?????/*'), path(references)
    path models

    output:
    tuple val(meta), path("model_*", type: 'dir', includeInputs: true), emit: models
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def model_args = (models instanceof List ? models : [models]).collect { m -> "--model ${m}" }.join(' ')
    """
    gliocascade tune-threshold --pred pred --references ${references} ${model_args} ${args}
    """

    stub:
    """
    mkdir -p model_stub
    touch model_stub/model.json
    """
}
