process PREDICT {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container}"

    input:
    tuple val(meta), path(case_dir, stageAs: 'case'), path(models, stageAs: 'model_?')

    output:
    tuple val(meta), path("${meta.id}_pred.nii.gz"), emit: pred
    tuple val(meta), path("${meta.id}_prob.nii.gz"), emit: prob, optional: true
    tuple val(meta), path("provenance_predict.json"), emit: provenance
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    script:
    def args = task.ext.args ?: ''
    def model_args = (models instanceof List ? models : [models]).collect { m -> "--model ${m}" }.join(' ')
    """
    gliocascade predict --case ${case_dir} ${model_args} --out . --case-id ${meta.id} ${args}
    """

    stub:
    """
    touch ${meta.id}_pred.nii.gz ${meta.id}_prob.nii.gz provenance_predict.json
    """
}
